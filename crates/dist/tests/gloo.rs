//! c10d's Gloo process group between real OS processes on this machine.
//!
//! Each rank is this test binary run again with `DISSECT_DIST_ROLE` naming its part: the
//! harness then runs only `child_process_role`, which plays that part and fails (exit status
//! non-zero) on any wrong value. Gloo is pinned to the loopback interface
//! (`GLOO_SOCKET_IFNAME=lo`), so no test traffic leaves 127.0.0.1 whatever this machine's
//! hostname resolves to.

#![cfg(feature = "c10d")]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use dissect_dist::{Backend, Collective, DistError, ProcessGroup, Rendezvous};

const ROLE: &str = "DISSECT_DIST_ROLE";
const RANK: &str = "DISSECT_DIST_RANK";
const WORLD: &str = "DISSECT_DIST_WORLD";
const PORT: &str = "DISSECT_DIST_PORT";
/// What the rank that is about to be killed prints once it has joined.
const READY: &str = "DISSECT_DIST_READY";

/// A port nobody listens on now (the OS's pick of a free one).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

fn rendezvous(rank: usize, world_size: usize, port: u16, timeout: Duration) -> Rendezvous {
    Rendezvous {
        rank,
        world_size,
        local_rank: rank,
        master_addr: "127.0.0.1".to_string(),
        master_port: port,
        launcher_hosts_store: false,
        timeout,
    }
}

/// Starts rank `rank` of a job of `world` playing `role`.
fn spawn(role: &str, rank: usize, world: usize, port: u16) -> Child {
    let exe = std::env::current_exe().expect("the test binary's path");
    Command::new(exe)
        .args(["--exact", "child_process_role", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(RANK, rank.to_string())
        .env(WORLD, world.to_string())
        .env(PORT, port.to_string())
        .env("GLOO_SOCKET_IFNAME", "lo")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start a rank")
}

/// Waits for a child until `deadline`, killing it past that: a hung rank fails the test
/// instead of hanging it.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().expect("poll a rank") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a job of `world` ranks playing `role`; asserts every rank succeeds within `limit`.
fn run_job(role: &str, world: usize, limit: Duration) {
    let started = Instant::now();
    let port = free_port();
    let mut children: Vec<Child> = (0..world).map(|rank| spawn(role, rank, world, port)).collect();
    let deadline = started + limit;
    for (rank, child) in children.iter_mut().enumerate() {
        let status = wait_until(child, deadline);
        assert!(status.is_some_and(|s| s.success()), "rank {rank} of {world} ({role}): {status:?}");
    }
    eprintln!("{role} with {world} processes took {:.2?}", started.elapsed());
}

#[test]
fn collectives_between_two_processes() {
    run_job("collectives", 2, Duration::from_secs(90));
}

#[test]
fn collectives_between_three_processes() {
    run_job("collectives", 3, Duration::from_secs(90));
}

/// Starts ranks 0 and 1 of 3 as survivors and rank 2 as `victim_role`; returns them once
/// rank 2 has joined (and said so).
fn start_job_with_victim(victim_role: &str) -> (Vec<Child>, Child) {
    let port = free_port();
    let survivors: Vec<Child> = (0..2).map(|rank| spawn("survivor", rank, 3, port)).collect();
    let mut victim = spawn(victim_role, 2, 3, port);
    let stdout = victim.stdout.take().expect("the victim's stdout");
    let joined = BufReader::new(stdout).lines().map_while(Result::ok).any(|line| line.contains(READY));
    assert!(joined, "rank 2 never joined");
    (survivors, victim)
}

/// Asserts that both survivors exit successfully (their collectives failed in time) within
/// `limit`.
fn assert_survivors_fail_in_time(survivors: &mut [Child], limit: Duration) {
    let deadline = Instant::now() + limit;
    for (rank, child) in survivors.iter_mut().enumerate() {
        let status = wait_until(child, deadline);
        assert!(status.is_some_and(|s| s.success()), "surviving rank {rank}: {status:?}");
    }
}

/// Rank 2 of 3 joins and then is killed (SIGKILL) before the next collective: ranks 0 and 1
/// must get an error from it, quickly (its sockets close), and exit.
#[test]
fn a_killed_peer_fails_the_collective_instead_of_hanging() {
    let started = Instant::now();
    let (mut survivors, mut victim) = start_job_with_victim("victim");
    victim.kill().expect("kill rank 2");
    let _ = victim.wait();
    assert_survivors_fail_in_time(&mut survivors, Duration::from_secs(30));
    eprintln!("killed-peer job took {:.2?}", started.elapsed());
}

/// Rank 2 of 3 joins and then stops taking part without closing anything (a stalled
/// process, or a machine gone silent): ranks 0 and 1 must fail once the 5 s timeout passes.
#[test]
fn a_stalled_peer_fails_the_collective_after_the_timeout() {
    let started = Instant::now();
    let (mut survivors, mut victim) = start_job_with_victim("victim");
    assert_survivors_fail_in_time(&mut survivors, Duration::from_secs(40));
    victim.kill().expect("end rank 2");
    let _ = victim.wait();
    eprintln!("stalled-peer job took {:.2?}", started.elapsed());
}

/// A client of a store nobody serves gives up after its timeout with DistError::Connect.
#[test]
fn connecting_to_a_port_nobody_serves_fails_after_the_timeout() {
    let port = free_port();
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let result = ProcessGroup::connect(&rendezvous(1, 2, port, timeout), Backend::Gloo);
    let elapsed = started.elapsed();
    let err = result.expect_err("nobody serves the store");
    assert!(matches!(err, DistError::Connect { ref address, .. } if address == &format!("127.0.0.1:{port}")), "{err}");
    assert!(elapsed < timeout + Duration::from_secs(8), "gave up after {elapsed:.2?}");
    eprintln!("client gave up after {elapsed:.2?}: {err}");
}

/// Rank 0 serves the store, but its peer never comes: DistError::Connect after the timeout.
#[test]
fn serving_a_job_whose_peers_never_come_fails_after_the_timeout() {
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = ProcessGroup::connect(&rendezvous(0, 2, free_port(), timeout), Backend::Gloo)
        .expect_err("the second process never comes");
    let elapsed = started.elapsed();
    assert!(matches!(err, DistError::Connect { .. }), "{err}");
    assert!(elapsed < timeout + Duration::from_secs(8), "gave up after {elapsed:.2?}");
    eprintln!("server gave up after {elapsed:.2?}: {err}");
}

#[test]
fn a_job_of_one_needs_no_peer() {
    let pg = ProcessGroup::connect(&rendezvous(0, 1, free_port(), Duration::from_secs(10)), Backend::Gloo)
        .expect("a job of one");
    let mut data = [1.5, -2.0];
    pg.all_reduce_sum(&mut data).unwrap();
    assert_eq!(data, [1.5, -2.0]);
    assert_eq!(pg.all_gather(&[3.0]).unwrap(), vec![vec![3.0]]);
    assert_eq!(pg.all_gather_bytes(b"abc").unwrap(), vec![b"abc".to_vec()]);
    assert!(matches!(pg.broadcast(&mut data, 1), Err(DistError::Rank { rank: 1, world_size: 1 })));
    pg.barrier().unwrap();
}

/// NCCL on a device no machine has is a connect error: "no NCCL" in a build without it,
/// "does not exist" in one with it (any machine, with or without GPUs).
#[test]
fn nccl_on_a_missing_device_or_without_nccl_is_a_connect_error() {
    let rdv = rendezvous(0, 1, free_port(), Duration::from_secs(5));
    let err = ProcessGroup::connect(&rdv, Backend::Nccl { device: 1000 }).expect_err("no such device");
    let expected = if ProcessGroup::has_nccl() { "CUDA device 1000 does not exist" } else { "no NCCL" };
    assert!(matches!(err, DistError::Connect { ref reason, .. } if reason.contains(expected)), "{err}");
}

/// The entry of a child process; a no-op in the ordinary test run.
#[test]
fn child_process_role() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let var = |name: &str| -> usize { std::env::var(name).expect(name).parse().expect(name) };
    let (rank, world) = (var(RANK), var(WORLD));
    let port = u16::try_from(var(PORT)).expect("port");
    match role.as_str() {
        "collectives" => collectives(rank, world, port),
        "survivor" => survivor(rank, world, port),
        "victim" => victim(rank, world, port),
        other => panic!("unknown role {other}"),
    }
}

/// Rank `r`'s part of the collectives, checked against the values every rank can compute.
fn collectives(rank: usize, world: usize, port: u16) {
    let pg = ProcessGroup::connect(&rendezvous(rank, world, port, Duration::from_secs(30)), Backend::Gloo)
        .unwrap_or_else(|e| panic!("rank {rank}: {e}"));
    assert_eq!((pg.rank(), pg.world_size()), (rank, world));
    let ranks = 0..world;

    let r = rank as f32;
    let mut data = vec![r + 1.0, 10.0 * r, -r, 0.5];
    pg.all_reduce_sum(&mut data).unwrap();
    let sum = |f: fn(f32) -> f32| ranks.clone().map(|q| f(q as f32)).sum::<f32>();
    assert_eq!(data, vec![sum(|q| q + 1.0), sum(|q| 10.0 * q), sum(|q| -q), 0.5 * world as f32]);

    // Rank q sends q values (rank 0 none): the lengths differ, one is empty.
    let values = |q: usize| (0..q).map(|i| (q * 10 + i) as f32 + 0.25).collect::<Vec<f32>>();
    let gathered = pg.all_gather(&values(rank)).unwrap();
    assert_eq!(gathered, ranks.clone().map(values).collect::<Vec<_>>());
    assert_eq!(pg.all_gather(&[]).unwrap(), vec![Vec::<f32>::new(); world]);

    // Every byte value survives, and lengths differ.
    let bytes = |q: usize| {
        let mut b = vec![0u8, 255, 128, q as u8];
        b.extend(format!("rank {q}").bytes().cycle().take(3 * q));
        b
    };
    let gathered = pg.all_gather_bytes(&bytes(rank)).unwrap();
    assert_eq!(gathered, ranks.clone().map(bytes).collect::<Vec<_>>());

    let mut data: Vec<f32> = (0..5).map(|i| (rank * 100 + i) as f32).collect();
    pg.broadcast(&mut data, 1).unwrap();
    assert_eq!(data, vec![100.0, 101.0, 102.0, 103.0, 104.0]);
    assert!(matches!(pg.broadcast(&mut data, world), Err(DistError::Rank { .. })));

    pg.barrier().unwrap();
}

/// Joins, tells the parent, then takes no part in anything until the parent kills it.
fn victim(rank: usize, world: usize, port: u16) {
    let pg = ProcessGroup::connect(&rendezvous(rank, world, port, Duration::from_secs(5)), Backend::Gloo)
        .unwrap_or_else(|e| panic!("rank {rank}: {e}"));
    pg.barrier().unwrap();
    println!("{READY}");
    std::thread::sleep(Duration::from_secs(60));
    panic!("rank {rank} was not killed");
}

/// Joins, then runs collectives with a peer that is killed or stalled: they must fail, within
/// the 5 s timeout and some slack, never hang.
fn survivor(rank: usize, world: usize, port: u16) {
    let timeout = Duration::from_secs(5);
    let pg = ProcessGroup::connect(&rendezvous(rank, world, port, timeout), Backend::Gloo)
        .unwrap_or_else(|e| panic!("rank {rank}: {e}"));
    pg.barrier().unwrap();
    // The victim is being killed now; the next collective needs it.
    let started = Instant::now();
    let mut data = vec![1.0f32; 1024];
    let result = pg.all_reduce_sum(&mut data);
    let elapsed = started.elapsed();
    let err = result.expect_err("a collective with a dead peer succeeded");
    assert!(matches!(err, DistError::Collective { operation: "all_reduce_sum", timeout_s: 5, .. }), "{err}");
    assert!(elapsed < Duration::from_secs(20), "rank {rank} failed only after {elapsed:.2?}");
    eprintln!("rank {rank}: all_reduce_sum failed after {elapsed:.2?}: {err}");
    // Later collectives fail too, rather than hang.
    let started = Instant::now();
    assert!(pg.barrier().is_err());
    eprintln!("rank {rank}: barrier failed after {:.2?}", started.elapsed());
}
