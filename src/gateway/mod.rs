//! Tanium API Gateway client.
