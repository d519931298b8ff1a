//! End-to-end tests: the fleet in-process against the real RabbitMQ and the mock
//! provider. Each test runs in its own broker namespace.

mod dispatch;
mod faults;
mod generic;
mod python;
mod send;
