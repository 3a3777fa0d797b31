//! The wagate under test as one node or several: on SQLite in a temporary data directory
//! (one node), or on a fresh PostgreSQL database made for the run (any number of nodes,
//! each with its own data directory and node id), and the failover measurement: how long
//! after a `kill -9` of the node driving a device a message sent to it is taken by
//! WhatsApp again (the sandbox's server ack), from another node.

use crate::server::{self, Api, Server};
use anyhow::{Context, bail};
use std::path::Path;
use std::time::{Duration, Instant};
use wagate_wa_storage::testing::{TestDatabase, database_at};

/// Running nodes, the API of the first, and what must outlive them.
pub struct Cluster {
    pub servers: Vec<Server>,
    /// Every node's base URL, in node order.
    pub bases: Vec<String>,
    /// The API on node 1 (any node answers any call).
    pub api: Api,
    /// Dropped after the servers: the fresh database is dropped with it.
    db: Option<TestDatabase>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    pub fn kind(&self) -> String {
        match (&self.db, self.servers.len()) {
            (None, _) => "SQLite, one node".into(),
            (Some(_), 1) => "PostgreSQL, one node".into(),
            (Some(_), n) => format!("PostgreSQL, {n} nodes"),
        }
    }
}

/// Starts `nodes` servers with `env`: on SQLite when `database_url` is `None` (then one
/// node), else on a fresh database made on that PostgreSQL server.
pub async fn start(
    bin: &Path,
    env: &[(&str, String)],
    database_url: Option<&str>,
    nodes: usize,
) -> anyhow::Result<Cluster> {
    let nodes = nodes.max(1);
    let db = match database_url {
        Some(url) => Some(
            database_at(url)
                .await
                .context("no PostgreSQL at --database-url")?,
        ),
        None if nodes > 1 => bail!("--nodes above 1 needs --database-url (PostgreSQL)"),
        None => None,
    };
    let mut dirs = Vec::new();
    let mut servers = Vec::new();
    let key = match &db {
        Some(db) => server::create_account_on(bin, &db.url)?,
        None => {
            let dir = tempfile::tempdir()?;
            let key = server::create_account(bin, dir.path())?;
            dirs.push(dir);
            key
        }
    };
    for i in 0..nodes {
        if dirs.len() <= i {
            dirs.push(tempfile::tempdir()?);
        }
        let mut env: Vec<(&str, String)> = env.to_vec();
        if let Some(db) = &db {
            env.push(("WAGATE_DATABASE_URL", db.url.clone()));
            env.push(("WAGATE_NODE_ID", format!("node-{}", i + 1)));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        servers.push(Server::start(bin, dirs[i].path(), server::free_port()?, &env).await?);
    }
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let api = Api::new(&bases[0], &key);
    Ok(Cluster {
        servers,
        bases,
        api,
        db,
        _dirs: dirs,
    })
}

/// The node (index) driving `uid`, as the first node that answers says.
async fn node_index(c: &Cluster, uid: &str, alive: &[bool]) -> Option<usize> {
    for (i, base) in c.bases.iter().enumerate() {
        if !alive[i] {
            continue;
        }
        let api = Api::new(base, &c.api.key);
        if let Ok(v) = api
            .ok(
                reqwest::Method::GET,
                &format!("/v1/developer/devices/{uid}"),
                None,
            )
            .await
        {
            let node = v["node"].as_str()?;
            return node
                .strip_prefix("node-")
                .and_then(|n| n.parse::<usize>().ok())
                .map(|n| n - 1);
        }
    }
    None
}

/// `kills` times: SIGKILL the node driving `uid`, send to the device through a survivor,
/// and time until WhatsApp (the sandbox's server) acknowledged it; then restart the node.
/// Returns each failover's time.
pub async fn failover(c: &mut Cluster, uid: &str, kills: usize) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::new();
    let mut alive = vec![true; c.servers.len()];
    for k in 0..kills {
        let Some(victim) = node_index(c, uid, &alive).await else {
            bail!("kill {k}: no node drives {uid}");
        };
        c.servers[victim].kill9()?;
        alive[victim] = false;
        let killed = Instant::now();
        let survivor = (0..c.servers.len())
            .find(|&i| alive[i])
            .context("no node left")?;
        let api = Api::new(&c.bases[survivor], &c.api.key);
        let sent = api
            .ok(
                reqwest::Method::POST,
                "/v1/developer/messages/send",
                Some(&serde_json::json!({
                    "deviceUid": uid,
                    "to": server::random_recipient(),
                    "text": format!("failover {k}"),
                })),
            )
            .await?;
        let id = sent["messageId"].as_str().context("messageId")?.to_owned();
        loop {
            let m = api
                .ok(
                    reqwest::Method::GET,
                    &format!("/v1/developer/messages/{id}"),
                    None,
                )
                .await?;
            if m["status"] != "queued" {
                break;
            }
            if killed.elapsed() > Duration::from_secs(120) {
                bail!("kill {k}: the message was not sent within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = killed.elapsed();
        out!(
            "kill {}: node-{} killed; sent from another node after {:.1} s",
            k + 1,
            victim + 1,
            took.as_secs_f64()
        );
        times.push(took);
        c.servers[victim].restart().await?;
        alive[victim] = true;
        // Let the restarted node rejoin and take its share back.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    Ok(times)
}
