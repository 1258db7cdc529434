#include "../threads.h"

#include <pthread.h>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace sise {

namespace {
void run_child_on_one_thread() {
#ifdef _OPENMP
  omp_set_num_threads(1);
#endif
}
}  // namespace

void make_fork_safe() {
  static const int registered = pthread_atfork(nullptr, nullptr, run_child_on_one_thread);
  (void)registered;
}

}  // namespace sise
