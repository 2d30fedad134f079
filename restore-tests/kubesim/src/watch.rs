//! Watches: a chunked stream of `{"type":…,"object":…}` lines (KUBESIM.md §4.18-24).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use crate::cluster::{Cluster, ListOpts, Target};
use crate::status::ApiError;
use crate::store::{self, Event, EventType, Obj};

/// Query parameters of a watch.
#[derive(Debug, Clone)]
pub struct WatchOpts {
    pub select: ListOpts,
    pub resource_version: Option<String>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout: Duration,
    /// How often to send a bookmark when `bookmarks` is set.
    pub bookmark_interval: Duration,
}

enum Start {
    /// Synthetic ADDED events for the current objects.
    Initial(Vec<Arc<Obj>>),
    /// Changes after the requested revision.
    History(Vec<Arc<Event>>),
    /// The requested revision is compacted: one ERROR event, then the end.
    TooOld(u64),
}

/// Starts a watch; the receiver yields the response body's chunks and ends with the watch.
pub fn start(
    cluster: &Arc<Cluster>,
    t: Target,
    o: WatchOpts,
) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let rv = match o.resource_version.as_deref() {
        None | Some("" | "0") => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}")))?,
        ),
    };
    let (rx_events, start, current) = {
        let st = cluster.read();
        let rx = cluster.subscribe();
        let start = match rv {
            None => Start::Initial(
                store::scan(&st.objects, t.ty.id, t.ns.as_deref(), None)
                    .map(|(_, o)| o.clone())
                    .collect(),
            ),
            Some(n) => match st.history_after(n) {
                Some(events) => Start::History(events),
                None => Start::TooOld(n),
            },
        };
        (rx, start, st.rev)
    };
    let (tx, rx) = mpsc::channel(64);
    let cluster = cluster.clone();
    tokio::spawn(async move {
        let w = Watcher { cluster, t, o, tx };
        w.run(rx_events, start, current).await;
    });
    Ok(rx)
}

struct Watcher {
    cluster: Arc<Cluster>,
    t: Target,
    o: WatchOpts,
    tx: mpsc::Sender<Bytes>,
}

impl Watcher {
    async fn run(self, mut events: broadcast::Receiver<Arc<Event>>, start: Start, current: u64) {
        let mut progress = current;
        let deadline = tokio::time::sleep(self.o.timeout);
        tokio::pin!(deadline);
        match start {
            Start::Initial(objs) => {
                for obj in objs {
                    if self.matches(&obj) && !self.send_obj(EventType::Added, &obj).await {
                        return;
                    }
                }
                if self.o.send_initial_events && !self.bookmark(progress, true).await {
                    return;
                }
            }
            Start::History(list) => {
                for e in list {
                    progress = progress.max(e.rev);
                    if !self.deliver(&e).await {
                        return;
                    }
                }
                if self.o.send_initial_events && !self.bookmark(progress, true).await {
                    return;
                }
            }
            Start::TooOld(n) => {
                let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": format!("too old resource version: {n} ({current})"), "reason": "Expired", "code": 410});
                let line = format!("{}\n", json!({"type": "ERROR", "object": status}));
                let _ = self.tx.send(Bytes::from(line)).await;
                return;
            }
        }
        let mut ticker = tokio::time::interval(self.o.bookmark_interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                () = &mut deadline => return,
                () = self.tx.closed() => return,
                _ = ticker.tick(), if self.o.bookmarks => {
                    if !self.bookmark(progress, false).await {
                        return;
                    }
                }
                e = events.recv() => match e {
                    Ok(e) => {
                        if e.rev <= progress {
                            continue;
                        }
                        progress = e.rev;
                        if !self.deliver(&e).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Too slow a reader: end the watch like a compacted one, the client re-lists.
                        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": format!("too old resource version: {progress}"), "reason": "Expired", "code": 410});
                        let _ = self.tx.send(Bytes::from(format!("{}\n", json!({"type": "ERROR", "object": status})))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    }

    fn in_scope(&self, e: &Event) -> bool {
        e.key.ty == self.t.ty.id && self.t.ns.as_deref().is_none_or(|ns| e.key.ns == ns)
    }

    fn matches(&self, obj: &Obj) -> bool {
        let s = &self.o.select;
        if s.labels.is_empty() && s.fields.is_empty() {
            return true;
        }
        self.cluster.selects(s, obj)
    }

    /// Sends one change, turned into ADDED/DELETED when it crosses the selector.
    async fn deliver(&self, e: &Event) -> bool {
        if !self.in_scope(e) {
            return true;
        }
        let now = self.matches(&e.obj);
        let before = e.prev.as_ref().is_some_and(|p| self.matches(p));
        let kind = match (e.kind, before, now) {
            (EventType::Deleted, b, n) if b || n => EventType::Deleted,
            (EventType::Modified, true, false) => EventType::Deleted,
            (EventType::Added, _, true) | (EventType::Modified, false, true) => EventType::Added,
            (EventType::Modified, true, true) => EventType::Modified,
            _ => return true,
        };
        self.send_obj(kind, &e.obj).await
    }

    async fn send_obj(&self, kind: EventType, obj: &Obj) -> bool {
        let mut line = Vec::with_capacity(obj.body.len() + 96);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(kind.as_str().as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        store::write_typed(&mut line, &obj.body, &self.t.api_version(), &self.t.ty.kind);
        line.extend_from_slice(b"}\n");
        self.tx.send(Bytes::from(line)).await.is_ok()
    }

    async fn bookmark(&self, rev: u64, initial_end: bool) -> bool {
        let mut meta = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj =
            json!({"kind": self.t.ty.kind, "apiVersion": self.t.api_version(), "metadata": meta});
        let line = format!("{}\n", json!({"type": "BOOKMARK", "object": obj}));
        self.tx.send(Bytes::from(line)).await.is_ok()
    }
}
