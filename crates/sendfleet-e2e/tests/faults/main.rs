//! Crash tests on the real binaries: `kill -9` of a process mid-run, and the fault matrix
//! (every failpoint × abort / error / stall), against the real RabbitMQ and Redis and the
//! mock provider. The workspace must be built first (`scripts/test.sh` does): the
//! binaries under `target/debug/` carry the failpoints.

mod clean_shutdown;
mod common;
mod dispatcher_kill;
mod matrix;
