//! Usage ingest (stub, owned by the bus helper).
