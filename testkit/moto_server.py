"""moto_server, as `moto_server ARGS` starts it, with one pure cost memoized.

moto's EventBridge formats every event it delivers to a target by parsing eight constant
JSONPath expressions with jsonpath_ng, whose parser rebuilds its yacc tables on every
parse (~30 ms each): ~0.25 s of CPU per delivered event, so the 10,000 deployment events of
a benchmark's convergence took moto most of an hour to deliver. A parsed expression is an
immutable value of its text, so the parses are memoized here; rule matching, delivery and
everything else are moto's own, unchanged.
"""

import functools
import sys

try:
    import jsonpath_ng.ext
    import jsonpath_ng.ext.parser
except ImportError:  # moto without its EventBridge extras: nothing to memoize
    jsonpath_ng = None

if jsonpath_ng is not None:
    _parse = functools.lru_cache(maxsize=256)(jsonpath_ng.ext.parser.parse)
    jsonpath_ng.ext.parse = _parse
    jsonpath_ng.ext.parser.parse = _parse

from moto.server import main  # noqa: E402  (after the patch, which its import must see)

if __name__ == "__main__":
    main(sys.argv[1:])
