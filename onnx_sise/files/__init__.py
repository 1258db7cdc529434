"""Files from strangers and files we write: `reading` opens regular files only, without
blocking, bounded, and refuses one that changes while read; `writing` replaces outputs
atomically, together or not at all, with signals deferred."""
