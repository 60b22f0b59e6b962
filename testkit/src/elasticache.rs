//! ElastiCache replication-group behaviour moto lacks, modelled in the AWS test proxy.
//!
//! moto (5.2) creates, describes, tags and deletes replication groups, but: it keeps one
//! member cluster whatever `NumCacheClusters` says, answers DescribeCacheClusters for no
//! member, reports no reader endpoint, and implements neither ModifyReplicationGroup nor
//! Increase/DecreaseReplicaCount. For groups created through the proxy, the model records
//! what CreateReplicationGroup asked for and then follows the ElastiCache API Reference:
//! - ModifyReplicationGroup with ApplyImmediately changes CacheNodeType, Engine,
//!   EngineVersion, SnapshotRetentionLimit, SnapshotWindow, PreferredMaintenanceWindow,
//!   AutomaticFailoverEnabled and MultiAZEnabled; "AutomaticFailoverEnabled: ... must be
//!   enabled for ... Multi-AZ" and needs at least one replica (InvalidParameterCombination);
//! - IncreaseReplicaCount / DecreaseReplicaCount set the number of replicas
//!   (`NewReplicaCount`); "you cannot decrease to 0 replicas with automatic failover
//!   enabled" (InvalidParameterCombination);
//! - DescribeReplicationGroups shows these values, one `MemberClusters` entry per node
//!   (`<id>-001`, `<id>-002`, …) and a `ReaderEndpoint` when there are replicas;
//! - DescribeCacheClusters answers for those members with EngineVersion and
//!   PreferredMaintenanceWindow.
//! - DeleteReplicationGroup with FinalSnapshotIdentifier takes that snapshot (moto's
//!   CreateSnapshot) before the group goes, so DescribeSnapshots finds it (awsproxy.rs).
//!
//! Pinned by `elasticache_model_follows_the_api_reference` in tests/cache_e2e.rs.

use std::collections::HashMap;

/// What the proxy knows of one replication group beyond moto.
#[derive(Clone, Debug, Default)]
pub struct Group {
    members: usize,
    engine: String,
    engine_version: String,
    maintenance_window: String,
    node_type: Option<String>,
    snapshot_retention: Option<String>,
    snapshot_window: Option<String>,
    failover: Option<bool>,
    multi_az: Option<bool>,
}

/// The replication groups created through the proxy.
#[derive(Default)]
pub struct Model {
    groups: HashMap<String, Group>,
}

/// The model of this process's moto (one per test binary, shared by every proxy in front of
/// it, as moto's own state is).
pub fn model() -> std::sync::MutexGuard<'static, Model> {
    static MODEL: std::sync::OnceLock<std::sync::Mutex<Model>> = std::sync::OnceLock::new();
    MODEL.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner())
}

/// A query-protocol form (`Action=...&Key=value`), decoded.
pub fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn xml_response(action: &str, result: &str) -> String {
    format!(
        "<{action}Response xmlns=\"http://elasticache.amazonaws.com/doc/2015-02-02/\"><{action}Result>{result}</{action}Result><ResponseMetadata><RequestId>shipshape-proxy</RequestId></ResponseMetadata></{action}Response>"
    )
}

/// An ElastiCache error in the query protocol's format.
fn error(code: &str, message: &str) -> (u16, String) {
    (
        400,
        format!(
            "<ErrorResponse xmlns=\"http://elasticache.amazonaws.com/doc/2015-02-02/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>shipshape-proxy</RequestId></ErrorResponse>"
        ),
    )
}

fn replace_element(xml: &str, name: &str, value: &str) -> String {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    match (xml.find(&open), xml.find(&close)) {
        (Some(a), Some(b)) if a < b => format!("{}{open}{value}{close}{}", &xml[..a], &xml[b + close.len()..]),
        _ => xml.to_string(),
    }
}

fn on_off(v: bool) -> &'static str {
    if v {
        "enabled"
    } else {
        "disabled"
    }
}

impl Model {
    /// Records a successful CreateReplicationGroup.
    pub fn created(&mut self, f: &HashMap<String, String>) {
        let Some(id) = f.get("ReplicationGroupId") else { return };
        let members = f
            .get("NumCacheClusters")
            .and_then(|n| n.parse().ok())
            .or_else(|| f.get("ReplicasPerNodeGroup").and_then(|n| n.parse::<usize>().ok()).map(|r| r + 1))
            .unwrap_or(1);
        self.groups.insert(
            id.clone(),
            Group {
                members,
                engine: f.get("Engine").cloned().unwrap_or_else(|| "redis".into()),
                engine_version: f.get("EngineVersion").cloned().unwrap_or_default(),
                maintenance_window: f.get("PreferredMaintenanceWindow").cloned().unwrap_or_else(|| "sun:23:00-mon:01:30".into()),
                node_type: None,
                snapshot_retention: None,
                snapshot_window: f.get("SnapshotWindow").cloned(),
                failover: f.get("AutomaticFailoverEnabled").map(|v| v == "true"),
                multi_az: f.get("MultiAZEnabled").map(|v| v == "true"),
            },
        );
    }

    /// Forgets a deleted group.
    pub fn deleted(&mut self, f: &HashMap<String, String>) {
        if let Some(id) = f.get("ReplicationGroupId") {
            self.groups.remove(id);
        }
    }

    /// The proxy's own answer to an operation moto lacks, for a group it knows: (status, XML).
    pub fn answer(&mut self, operation: &str, f: &HashMap<String, String>) -> Option<(u16, String)> {
        match operation {
            "ModifyReplicationGroup" => {
                let id = f.get("ReplicationGroupId")?;
                let g = self.groups.get_mut(id)?;
                let failover = f.get("AutomaticFailoverEnabled").map(|v| v == "true").or(g.failover).unwrap_or(false);
                let multi_az = f.get("MultiAZEnabled").map(|v| v == "true").or(g.multi_az).unwrap_or(false);
                if failover && g.members < 2 {
                    return Some(error("InvalidParameterCombination", "Automatic failover needs at least one replica."));
                }
                if multi_az && !failover {
                    return Some(error("InvalidParameterCombination", "Multi-AZ needs automatic failover."));
                }
                g.failover = Some(failover);
                g.multi_az = Some(multi_az);
                if let Some(v) = f.get("CacheNodeType") {
                    g.node_type = Some(v.clone());
                }
                if let Some(v) = f.get("Engine") {
                    g.engine = v.clone();
                }
                if let Some(v) = f.get("EngineVersion") {
                    g.engine_version = v.clone();
                }
                if let Some(v) = f.get("SnapshotRetentionLimit") {
                    g.snapshot_retention = Some(v.clone());
                }
                if let Some(v) = f.get("SnapshotWindow") {
                    g.snapshot_window = Some(v.clone());
                }
                if let Some(v) = f.get("PreferredMaintenanceWindow") {
                    g.maintenance_window = v.clone();
                }
                let body =
                    format!("<ReplicationGroup><ReplicationGroupId>{id}</ReplicationGroupId><Status>modifying</Status></ReplicationGroup>");
                Some((200, xml_response("ModifyReplicationGroup", &body)))
            }
            "IncreaseReplicaCount" | "DecreaseReplicaCount" => {
                let id = f.get("ReplicationGroupId")?;
                let g = self.groups.get_mut(id)?;
                let replicas: usize = f.get("NewReplicaCount").and_then(|n| n.parse().ok())?;
                if replicas == 0 && g.failover == Some(true) {
                    return Some(error("InvalidParameterCombination", "Cannot decrease to 0 replicas with automatic failover enabled."));
                }
                if replicas > 5 {
                    return Some(error("InvalidParameterValue", "NewReplicaCount must be between 0 and 5."));
                }
                g.members = replicas + 1;
                let body =
                    format!("<ReplicationGroup><ReplicationGroupId>{id}</ReplicationGroupId><Status>modifying</Status></ReplicationGroup>");
                Some((200, xml_response(operation, &body)))
            }
            "DescribeCacheClusters" => {
                let member = f.get("CacheClusterId")?;
                let (id, g) = self.groups.iter().find(|(id, g)| (1..=g.members).any(|i| *member == format!("{id}-{i:03}")))?;
                let cluster = format!(
                    "<CacheClusters><CacheCluster><CacheClusterId>{member}</CacheClusterId><ReplicationGroupId>{id}</ReplicationGroupId><CacheClusterStatus>available</CacheClusterStatus><Engine>{}</Engine><EngineVersion>{}</EngineVersion><PreferredMaintenanceWindow>{}</PreferredMaintenanceWindow></CacheCluster></CacheClusters>",
                    g.engine, g.engine_version, g.maintenance_window
                );
                Some((200, xml_response("DescribeCacheClusters", &cluster)))
            }
            _ => None,
        }
    }

    /// moto's DescribeReplicationGroups answer with the modelled values, when it describes
    /// exactly one group the proxy knows.
    pub fn rewrite_describe(&self, xml: String) -> String {
        if xml.matches("<ReplicationGroupId>").count() != 1 {
            return xml;
        }
        let Some((id, g)) = self.groups.iter().find(|(id, _)| xml.contains(&format!("<ReplicationGroupId>{id}</ReplicationGroupId>")))
        else {
            return xml;
        };
        let members: String = (1..=g.members).map(|i| format!("<ClusterId>{id}-{i:03}</ClusterId>")).collect();
        let mut out = replace_element(&xml, "MemberClusters", &members);
        out = replace_element(&out, "Engine", &g.engine);
        if let Some(v) = &g.node_type {
            out = replace_element(&out, "CacheNodeType", v);
        }
        if let Some(v) = &g.snapshot_retention {
            out = replace_element(&out, "SnapshotRetentionLimit", v);
        }
        if let Some(v) = &g.snapshot_window {
            out = replace_element(&out, "SnapshotWindow", v);
        }
        if let Some(v) = g.failover {
            out = replace_element(&out, "AutomaticFailover", on_off(v));
        }
        if let Some(v) = g.multi_az {
            out = replace_element(&out, "MultiAZ", on_off(v));
        }
        if g.members > 1 && !out.contains("<ReaderEndpoint>") {
            let reader = format!("<ReaderEndpoint><Address>replica.{id}.cache.amazonaws.com</Address><Port>6379</Port></ReaderEndpoint>");
            out = out.replacen("</PrimaryEndpoint>", &format!("</PrimaryEndpoint>{reader}"), 1);
        }
        out
    }
}
