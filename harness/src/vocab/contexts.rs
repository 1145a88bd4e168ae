//! Contexts and start methods.

vocabulary! {
    /// An action on the default context.
    enum ContextsOp, table OPS;
    /// set the default start method (once, unless force)
    SetStartMethod = "set_start_method" [method], Nothing { method: req Method, force: opt Bool }
    /// the default start method (null if unset and allow_none)
    GetStartMethod = "get_start_method", Observation { allow_none: opt Bool }
}
