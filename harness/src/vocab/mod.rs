//! The step vocabulary: every action a case or a benchmark workload can take, module by module
//! (one file each: `process.rs`, `ipc.rs`, ...), as a typed [`Op`].
//!
//! Each module is declared once with `vocabulary!`: the declaration makes the module's op enum
//! (one variant per action, one typed field per action field), its table of [`OpSpec`]s (what
//! the loader checks and the docs list) and the parser from a step's fields. The loader
//! ([`crate::case`]) parses every action into an [`Op`] when the file loads; the conformance
//! interpreter ([`crate::exec`], one file per module) and the bench kernel
//! ([`crate::bench::kernel`]) match on it, so an action without an arm does not compile.
//!
//! Adding a module (say `manager`): write `vocab/manager.rs` with a `vocabulary!` block, add it
//! to `modules!` below, add `exec/manager.rs` and its arm in `exec::Exec::act`, an arm in the
//! bench compiler (`bench/kernel/compile.rs`; refuse it there if the bench does not run it),
//! `op_...` methods in `harness/py/reference.py` (and `bench_reference.py` for actions marked
//! `bench`), and a table in `cases/README.md`. The vocabulary's tests name whatever is missing.

use crate::node::{CaseError, Node, Source, Span};

pub mod kinds;

use kinds::FieldKind;

/// The type of an action's field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// The id of an object made by an earlier step (a string; `$var` interpolation allowed).
    Id,
    /// Two ids.
    Ids,
    /// A string.
    Str,
    /// An integer.
    Int,
    /// A boolean.
    Bool,
    /// Any value (TOML scalars, arrays, tables; `"$null"` is null).
    Any,
    /// A list of values.
    List,
    /// The items of a map: a list, or a range of integers `"A..B"`.
    Items,
    /// A task name from the file's task table.
    Task,
    /// A start method name.
    Method,
    /// A context: `"case"`, `"default"` or a start method name.
    Context,
    /// A typecode of shared values and arrays.
    TypeCode,
    /// A lock kind.
    LockKind,
}

impl Ty {
    /// What a value of this type must be, for messages.
    pub const fn want(self) -> &'static str {
        match self {
            Ty::Id => "an object id (a string)",
            Ty::Ids => "an array of two object ids",
            Ty::Str => "a string",
            Ty::Int => "an integer",
            Ty::Bool => "a boolean",
            Ty::Any => "a value",
            Ty::List => "an array",
            Ty::Items => "an array, a list parameter or a range \"A..B\"",
            Ty::Task => "a task name",
            Ty::Method => "a start method (fork, spawn, forkserver)",
            Ty::Context => "a context (\"case\", \"default\", fork, spawn, forkserver)",
            Ty::TypeCode => "a typecode (b, B, h, H, i, I, l, L, q, Q, f, d, c)",
            Ty::LockKind => "a lock kind (Lock, RLock, Semaphore, BoundedSemaphore)",
        }
    }
}

/// One field of an action.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// The key.
    pub name: &'static str,
    /// Its type.
    pub ty: Ty,
    /// Whether it must be given.
    pub required: bool,
}

/// What an action's event carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Returns {
    /// Nothing (the event records only success or the error kind).
    Nothing,
    /// An observation (`is_alive`, `exitcode`, `poll`, ...): kept in the trace.
    Observation,
    /// A result (`recv`, `get`, `apply`, `map`, ...): kept in the trace and collected into
    /// `expect.results`.
    Result,
}

/// An action of the vocabulary.
#[derive(Clone, Copy, Debug)]
pub struct OpSpec {
    /// The key that names the action in a step.
    pub name: &'static str,
    /// The field a bare value stands for (`join = "p"` is `join = { id = "p" }`).
    pub primary: Option<&'static str>,
    /// The fields (besides `error`, which every action accepts).
    pub fields: &'static [Field],
    /// What the event records.
    pub returns: Returns,
    /// One line of documentation.
    pub doc: &'static str,
    /// Whether the bench kernel runs it (workloads may use it).
    pub bench: bool,
}

/// The fields of one action, as the loader hands them to the op parsers: typed one by one, with
/// `path:line:column` for every complaint.
#[derive(Debug)]
pub struct Fields<'a> {
    src: &'a Source,
    op: &'static str,
    key_span: &'a Span,
    /// The action was written as a bare value (`join = "p"`): messages name the action.
    bare: bool,
    entries: Vec<(&'a str, &'a Node)>,
}

impl<'a> Fields<'a> {
    /// The fields `entries` of action `op`, whose key is at `key_span`.
    pub fn new(
        src: &'a Source,
        op: &'static str,
        key_span: &'a Span,
        bare: bool,
        entries: Vec<(&'a str, &'a Node)>,
    ) -> Fields<'a> {
        Fields {
            src,
            op,
            key_span,
            bare,
            entries,
        }
    }

    /// The node of field `name`, if given.
    pub fn node(&self, name: &str) -> Option<&'a Node> {
        self.entries.iter().find(|(k, _)| *k == name).map(|e| e.1)
    }

    fn what(&self, name: &str) -> String {
        if self.bare {
            format!("`{}`", self.op)
        } else {
            format!("`{}.{name}`", self.op)
        }
    }

    /// Field `name`, which must be given.
    pub fn req<K: FieldKind>(&self, name: &str) -> Result<K::Out, CaseError> {
        match self.node(name) {
            Some(n) => K::read(n, &self.what(name), self.src),
            None => Err(self.src.error(
                self.key_span,
                format!("`{}` needs the field `{name}`", self.op),
            )),
        }
    }

    /// Field `name`, if given.
    pub fn opt<K: FieldKind>(&self, name: &str) -> Result<Option<K::Out>, CaseError> {
        self.node(name)
            .map(|n| K::read(n, &self.what(name), self.src))
            .transpose()
    }
}

/// The Rust type of a field: `req` fields hold the kind's value, `opt` fields an `Option` of it.
macro_rules! field_type {
    (req $kind:ident) => {
        <$crate::vocab::kinds::$kind as $crate::vocab::kinds::FieldKind>::Out
    };
    (opt $kind:ident) => {
        Option<<$crate::vocab::kinds::$kind as $crate::vocab::kinds::FieldKind>::Out>
    };
}

macro_rules! read_field {
    ($f:ident, req, $kind:ident, $name:ident) => {
        $f.req::<$crate::vocab::kinds::$kind>(stringify!($name))?
    };
    ($f:ident, opt, $kind:ident, $name:ident) => {
        $f.opt::<$crate::vocab::kinds::$kind>(stringify!($name))?
    };
}

macro_rules! is_required {
    (req) => {
        true
    };
    (opt) => {
        false
    };
}

macro_rules! primary_field {
    () => {
        None
    };
    ($p:ident) => {
        Some(stringify!($p))
    };
}

macro_rules! is_flag {
    () => {
        false
    };
    (bench) => {
        true
    };
}

/// Declares one module of the vocabulary:
///
/// ```text
/// vocabulary! {
///     /// Processes: create, start, join, observe, signal, close.
///     enum ProcessOp, table OPS;
///     /// start a process
///     Start = "start" [id], Nothing, bench { id: req Id }
///     ...
/// }
/// ```
///
/// Each action: its doc line, the variant, its name in steps, the field a bare value stands for
/// (`[id]`, optional), what its event records ([`Returns`]), `bench` if the bench kernel runs it,
/// and its fields as `name: req|opt Kind` ([`kinds`]). The declaration makes the enum, the
/// table and `parse`/`name`.
macro_rules! vocabulary {
    (
        $(#[doc = $mdoc:literal])*
        enum $Enum:ident, table $TABLE:ident;
        $(
            #[doc = $doc:literal]
            $Var:ident = $name:literal $([$primary:ident])?, $ret:ident $(, $flag:ident)? {
                $($field:ident : $req:ident $kind:ident),* $(,)?
            }
        )*
    ) => {
        $(#[doc = $mdoc])*
        #[derive(Clone, Debug, PartialEq)]
        // Ops are made once, when a case loads, and never on a timed path (the bench compiles
        // them into closures first), so a large variant costs nothing worth a box.
        #[allow(missing_docs, clippy::large_enum_variant)]
        pub enum $Enum {
            $(
                #[doc = $doc]
                $Var { $($field: field_type!($req $kind),)* },
            )*
        }

        /// The module's actions.
        pub const $TABLE: &[$crate::vocab::OpSpec] = &[
            $($crate::vocab::OpSpec {
                name: $name,
                primary: primary_field!($($primary)?),
                fields: &[$($crate::vocab::Field {
                    name: stringify!($field),
                    ty: <$crate::vocab::kinds::$kind as $crate::vocab::kinds::FieldKind>::TY,
                    required: is_required!($req),
                },)*],
                returns: $crate::vocab::Returns::$ret,
                doc: $doc.trim_ascii(),
                bench: is_flag!($($flag)?),
            },)*
        ];

        impl $Enum {
            /// Parses action `name` from its fields; `None` if the module has no such action.
            pub fn parse(
                name: &str,
                f: &$crate::vocab::Fields<'_>,
            ) -> Result<Option<$Enum>, $crate::node::CaseError> {
                let _ = f;
                Ok(Some(match name {
                    $($name => $Enum::$Var { $($field: read_field!(f, $req, $kind, $field),)* },)*
                    _ => return Ok(None),
                }))
            }

            /// The action's name in steps.
            pub fn name(&self) -> &'static str {
                match self {
                    $($Enum::$Var { .. } => $name,)*
                }
            }
        }
    };
}

/// Lists the modules: the [`Op`] enum over their op enums, and [`MODULES`].
macro_rules! modules {
    ($($(#[doc = $doc:literal])* $Var:ident($module:ident::$Enum:ident) = $name:literal;)*) => {
        $(pub mod $module;)*

        /// One action, typed: the action of one module.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Op {
            $($(#[doc = $doc])* $Var($module::$Enum),)*
        }

        /// The vocabulary, module by module.
        pub const MODULES: &[(&str, &[OpSpec])] = &[$(($name, $module::OPS),)*];

        impl Op {
            /// Parses action `name` from its fields; `None` if no module has it.
            pub fn parse(name: &str, f: &Fields<'_>) -> Result<Option<Op>, CaseError> {
                $(if let Some(o) = $module::$Enum::parse(name, f)? {
                    return Ok(Some(Op::$Var(o)));
                })*
                Ok(None)
            }

            /// The action's name in steps.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Op::$Var(o) => o.name(),)*
                }
            }
        }
    };
}

modules! {
    /// Processes.
    Process(process::ProcessOp) = "process";
    /// Pipes and connections.
    Ipc(ipc::IpcOp) = "ipc";
    /// Contexts and start methods.
    Contexts(contexts::ContextsOp) = "contexts";
    /// Pools and their results.
    Pool(pool::PoolOp) = "pool";
    /// Queues.
    Queue(queue::QueueOp) = "queue";
    /// Locks, semaphores, events, conditions, barriers.
    Sync(sync::SyncOp) = "sync";
    /// Shared values and arrays.
    Shared(shared::SharedOp) = "shared";
    /// The parent's own steps.
    Parent(parent::ParentOp) = "parent";
}

impl Op {
    /// The action's entry in the vocabulary.
    pub fn spec(&self) -> &'static OpSpec {
        op(self.name()).expect("every op is in a table")
    }

    /// A complaint about the action that its fields' types cannot express, if any.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Op::Ipc(ipc::IpcOp::SendBytes { data, bytes, .. }) => match (data, bytes) {
                (Some(_), Some(_)) => Err("`send_bytes` takes `data` or `bytes`, not both".into()),
                (None, None) => Err("`send_bytes` needs the field `data` (or `bytes`)".into()),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

/// The action named `name`.
pub fn op(name: &str) -> Option<&'static OpSpec> {
    MODULES
        .iter()
        .flat_map(|(_, ops)| ops.iter())
        .find(|o| o.name == name)
}

/// Every action name, for messages.
pub fn op_names() -> Vec<&'static str> {
    MODULES
        .iter()
        .flat_map(|(_, ops)| ops.iter().map(|o| o.name))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;
