// kstatus: Flux's and cli-utils' readiness computation (sigs.k8s.io/cli-utils/pkg/kstatus),
// run on objects read from the API server, so tests assert what a GitOps tool would see.
// Reads one JSON object per line on stdin; prints "<Status> <message>" per line.
package main

import (
	"bufio"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	for in.Scan() {
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(in.Bytes()); err != nil {
			fmt.Printf("Error %v\n", err)
			continue
		}
		res, err := status.Compute(obj)
		if err != nil {
			fmt.Printf("Error %v\n", err)
			continue
		}
		fmt.Printf("%s %s\n", res.Status, res.Message)
	}
}
