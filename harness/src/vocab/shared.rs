//! Shared memory: Value and Array.

vocabulary! {
    /// An action on shared values and arrays.
    enum SharedOp, table OPS;
    /// create a Value of any typecode
    Value = "value", Nothing, bench { id: req Str, typecode: req TypeCode, init: req Any }
    /// create an Array of any typecode
    Array = "array", Nothing { id: req Str, typecode: req TypeCode, init: req List }
    /// the Value's value or the Array's items
    Read = "read" [id], Observation { id: req Id }
    /// set the Value (or the Array's first items)
    Write = "write", Nothing { id: req Id, value: req Any }
}
