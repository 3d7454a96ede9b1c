//! Config cache (stub, owned by the bus helper).
