//! Usage sink (stub, owned by the bus helper).
