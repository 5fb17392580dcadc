//! XTest injection observed by a real X client (being written).
