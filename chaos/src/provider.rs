//! The push provider courier delivers to: a real HTTP/1.1 server on
//! 127.0.0.1:0 (thread per connection, keep-alive, as courier's pooled client
//! expects) that answers as the schedule says — 200, 500, 429 with
//! `Retry-After: 1`, or nothing until courier times out — and records every 2xx
//! it gave. It can also SIGKILL the push process at the very moment around an
//! answer: right after a 2xx (before courier can record the job as sent), or on
//! a request it then leaves unanswered.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use courier_chaos::check::Delivery;
use courier_chaos::schedule::{Answer, Faults, Schedule};

/// When to SIGKILL the process delivering: after or before its `at`-th 2xx.
#[derive(Debug, Clone, Copy)]
pub struct Trigger {
    pub pid: u32,
    pub at: u64,
    pub after_answer: bool,
}

#[derive(Default)]
struct State {
    /// POSTs so far, over the schedule.
    requests: u64,
    deliveries: Vec<Delivery>,
    /// Non-200 answers given, by kind.
    faults: Faults,
    /// 2xx answers (or their would-be) since the trigger was set.
    accepted: u64,
    trigger: Option<Trigger>,
    /// When the trigger fired, if it did.
    fired: Option<Instant>,
    /// The number of the process delivering now (see [`Provider::begin_process`]).
    process: u64,
    /// Connections still open, by the process they were accepted under.
    open: std::collections::BTreeMap<u64, usize>,
}

/// The running provider.
pub struct Provider {
    pub url: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl Provider {
    pub fn start(schedule: &Schedule) -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the push provider");
        let url = format!("http://{}/push", listener.local_addr().unwrap());
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let (s, plan) = (state.clone(), schedule.clone());
        // The accept loop ends with the process: the harness runs one schedule's
        // provider at a time and each is small.
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (s, plan) = (s.clone(), plan.clone());
                // A connection is the process's that was current when it was
                // accepted: each courier process opens its own.
                let process = {
                    let mut st = s.0.lock().unwrap();
                    let p = st.process;
                    *st.open.entry(p).or_default() += 1;
                    p
                };
                std::thread::spawn(move || {
                    serve(conn, &s, &plan, process);
                    let mut st = s.0.lock().unwrap();
                    *st.open.entry(process).or_default() -= 1;
                    s.1.notify_all();
                });
            }
        });
        Provider { url, state }
    }

    /// A process that delivers pushes is about to start (the one before it has
    /// ended): connections accepted from now on are its. Waits (up to 30 s)
    /// until every connection of the one before is done, so what that one sent
    /// before it died is answered and recorded as its own, not the next one's.
    pub fn begin_process(&self) -> u64 {
        let (lock, cv) = &*self.state;
        let st = lock.lock().unwrap();
        let (mut st, _) = cv
            .wait_timeout_while(st, Duration::from_secs(30), |st| {
                st.open.get(&st.process).is_some_and(|n| *n > 0)
            })
            .unwrap();
        st.process += 1;
        st.process
    }

    /// Arms a kill of `pid` at its `at`-th accepted job from now.
    pub fn arm(&self, trigger: Trigger) {
        let mut st = self.state.0.lock().unwrap();
        st.accepted = 0;
        st.fired = None;
        st.trigger = Some(trigger);
    }

    /// Disarms; when the trigger fired, if it did.
    pub fn disarm(&self) -> Option<Instant> {
        let mut st = self.state.0.lock().unwrap();
        st.trigger = None;
        st.fired.take()
    }

    /// Waits up to `limit` for the armed trigger to fire; when it did.
    pub fn await_fired(&self, limit: Duration) -> Option<Instant> {
        let (lock, cv) = &*self.state;
        let st = lock.lock().unwrap();
        let (st, _) = cv
            .wait_timeout_while(st, limit, |st| st.fired.is_none())
            .unwrap();
        st.fired
    }

    /// Jobs accepted since the trigger was armed.
    pub fn accepted(&self) -> u64 {
        self.state.0.lock().unwrap().accepted
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.0.lock().unwrap().deliveries.clone()
    }

    /// The non-200 answers given so far.
    pub fn faults(&self) -> Faults {
        self.state.0.lock().unwrap().faults
    }
}

fn kill(pid: u32) {
    // SAFETY: kill(2) on a child the driver has not reaped yet (it waits for
    // the trigger before reaping), so the pid cannot have been reused.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// One connection: requests until the client closes it.
fn serve(conn: TcpStream, state: &(Mutex<State>, Condvar), plan: &Schedule, process: u64) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let mut out = match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    };
    let mut reader = BufReader::new(conn);
    loop {
        let Some(body) = read_request(&mut reader) else {
            return;
        };
        let (lock, cv) = state;
        let mut st = lock.lock().unwrap();
        st.requests += 1;
        let fault = plan.provider_answer(st.requests);
        match fault {
            Some(Answer::Status500) => {
                st.faults.provider_500 += 1;
                drop(st);
                if respond(
                    &mut out,
                    "500 Internal Server Error",
                    &[],
                    "{\"error\":\"chaos\"}",
                )
                .is_err()
                {
                    return;
                }
            }
            Some(Answer::TooMany) => {
                st.faults.provider_429 += 1;
                drop(st);
                if respond(
                    &mut out,
                    "429 Too Many Requests",
                    &[("Retry-After", "1")],
                    "{}",
                )
                .is_err()
                {
                    return;
                }
            }
            Some(Answer::Timeout) => {
                st.faults.provider_timeouts += 1;
                drop(st);
                // No answer: courier gives up after push.timeout_ms and drops the
                // connection, which ends this read.
                let mut sink = Vec::new();
                let _ = reader.read_to_end(&mut sink);
                return;
            }
            None => {
                st.accepted += 1;
                let trigger = st
                    .trigger
                    .filter(|t| t.at == st.accepted && st.fired.is_none());
                if let Some(t) = trigger.filter(|t| !t.after_answer) {
                    kill(t.pid);
                    st.fired = Some(Instant::now());
                    cv.notify_all();
                    return;
                }
                // Accepting is delivering (the provider sends the push now),
                // whether or not courier reads the answer; recorded first, under
                // the lock, so a delivery precedes any kill that follows it.
                let value: serde_json::Value =
                    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                st.deliveries.push(Delivery {
                    process,
                    body: value,
                });
                let answered = respond(&mut out, "200 OK", &[], "{}");
                if let Some(t) = trigger {
                    kill(t.pid);
                    st.fired = Some(Instant::now());
                    cv.notify_all();
                }
                if answered.is_err() {
                    return;
                }
            }
        }
    }
}

/// One request's body (`None` at the end of the connection or on garbage).
fn read_request(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut len = 0usize;
    let mut first = true;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if first {
            first = false;
            if line.is_empty() {
                return None;
            }
            continue;
        }
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(body)
}

fn respond(
    out: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<()> {
    let mut s = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s.push_str(body);
    out.write_all(s.as_bytes())?;
    out.flush()
}
