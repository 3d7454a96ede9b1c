//! Config publisher (stub, owned by the bus helper).
