// The library's own thread pool: the caller takes part, chunks are handed out by an atomic
// counter, and a forked child starts with a fresh pool.
#ifndef SOFTZO_COMMON_THREAD_POOL_H_
#define SOFTZO_COMMON_THREAD_POOL_H_

#include <cstdint>
#include <functional>

namespace softzo {

// Threads used when a call does not say: SOFTZO_NUM_THREADS, else the CPUs this process may use.
int default_num_threads();
void set_default_num_threads(int n);  // n >= 1

// Runs task(i) for every i in [0, num_tasks) on at most num_threads threads, the caller
// included, and returns when all are done. Which thread runs a task never changes what the
// task computes, so results do not depend on the thread count. If another caller is using the
// pool at that moment, the tasks run on the calling thread alone.
void parallel_for(int64_t num_tasks, int num_threads, const std::function<void(int64_t)>& task);

}  // namespace softzo

#endif  // SOFTZO_COMMON_THREAD_POOL_H_
