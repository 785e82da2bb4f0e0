//! A watchdog on every connection, against heads sent slowly on a kept-alive connection.
//!
//! actix bounds how long a request head may take only on a connection's first request
//! (`client_request_timeout`); after one quick request a client may send the next head a byte
//! at a time for as long as it likes, and keep the connection (its buffers, a place in
//! `MAX_CONNECTIONS`) forever. Each connection gets a small task that shuts its socket when no
//! request has been in progress for longer than a kept-alive connection may idle (5 s) plus
//! `REQUEST_TIMEOUT_MS`: an idle client has been let go by actix before then, so only a head
//! that is still arriving, or an answer the client will not read, is cut.

use actix_web::dev::Extensions;
use std::any::Any;
use std::cell::Cell;
use std::os::fd::AsFd;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// How long actix keeps an idle connection open between requests (its default).
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// What the watchdog knows of its connection: requests in progress, and when the last ended.
pub struct Watch {
    busy: Cell<u32>,
    since: Cell<Instant>,
}

/// Held while a request is in progress on a watched connection.
pub struct InProgress(Rc<Watch>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.busy.set(self.0.busy.get() - 1);
        self.0.since.set(Instant::now());
    }
}

/// Marks a request in progress on its connection (if watched) until the guard is dropped.
pub fn in_progress(req: &actix_web::HttpRequest) -> Option<InProgress> {
    let watch = req.conn_data::<Rc<Watch>>()?.clone();
    watch.busy.set(watch.busy.get() + 1);
    Some(InProgress(watch))
}

/// The `HttpServer::on_connect` hook: starts the watchdog of a new connection.
pub fn on_connect(request_timeout: Duration) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync {
    let limit = KEEP_ALIVE + request_timeout;
    move |conn, ext| {
        let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() else {
            return;
        };
        // A second descriptor of the socket, to shut it from the watchdog's task. (Borrowing
        // the raw one would save a descriptor but could, in a window actix's internals decide,
        // shut a socket that reused the number; so each connection costs two descriptors:
        // raise `ulimit -n` to at least twice MAX_CONNECTIONS.)
        let Ok(handle) = tcp.as_fd().try_clone_to_owned() else {
            return;
        };
        let socket = std::net::TcpStream::from(handle);
        let watch = Rc::new(Watch {
            busy: Cell::new(0),
            since: Cell::new(Instant::now()),
        });
        let weak: Weak<Watch> = Rc::downgrade(&watch);
        ext.insert(watch);
        actix_web::rt::spawn(async move {
            loop {
                actix_web::rt::time::sleep(Duration::from_secs(1)).await;
                // The connection is gone once actix drops its data.
                let Some(watch) = weak.upgrade() else {
                    return;
                };
                if watch.busy.get() == 0 && watch.since.get().elapsed() > limit {
                    log::debug!("closing a connection whose next request did not arrive in time");
                    let _ = socket.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
        });
    }
}
