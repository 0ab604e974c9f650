//! NATS JetStream (to come).
