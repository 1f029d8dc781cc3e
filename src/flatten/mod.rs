//! SPF flattening (being written): expand includes, redirects, `a` and `mx` into address
//! sets with exact RFC 7208 semantics, then pack an equivalent record chain within the
//! limits.
