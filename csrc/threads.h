// The CPU kernels' OpenMP thread team and fork().
#pragma once

namespace sise {

// GNU OpenMP's thread team does not survive fork(): a child that enters a parallel
// region waits forever for threads that were not copied. After this call, a forked
// child runs the CPU kernels on one thread (the parent keeps its team).
void make_fork_safe();

}  // namespace sise
