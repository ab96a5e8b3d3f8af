// A small pool without OpenMP: libgomp hangs after fork and fights PyTorch's own runtime.
#include "common/thread_pool.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/thread_context.h"

namespace softzo {
namespace {

thread_local int t_isa_override = -1;

struct Job {
  const std::function<void(int64_t)>* task;
  int isa_override;  // the caller's, applied on every thread that runs a task
  int64_t num_tasks;
  int max_helpers;  // workers allowed to join besides the caller
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::atomic<int> joined{0};
};

void run_tasks(Job& job) {
  const int saved = t_isa_override;
  t_isa_override = job.isa_override;
  int64_t finished = 0;
  for (int64_t i; (i = job.next.fetch_add(1, std::memory_order_relaxed)) < job.num_tasks;) {
    (*job.task)(i);
    ++finished;
  }
  t_isa_override = saved;
  if (finished) job.done.fetch_add(finished, std::memory_order_acq_rel);
}

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  void run(int64_t num_tasks, int num_threads, const std::function<void(int64_t)>& task) {
    const int helpers = static_cast<int>(std::min<int64_t>(num_threads - 1, num_tasks - 1));
    grow(helpers);
    auto job = std::make_shared<Job>();
    job->task = &task;
    job->isa_override = t_isa_override;
    job->num_tasks = num_tasks;
    job->max_helpers = helpers;
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = job;
      ++generation_;
    }
    cv_.notify_all();
    run_tasks(*job);
    // Tasks of this size take microseconds to milliseconds: spin briefly, then yield.
    for (int spins = 0; job->done.load(std::memory_order_acquire) < num_tasks; ++spins) {
      if (spins > 1000) std::this_thread::yield();
    }
    std::lock_guard<std::mutex> lock(mu_);
    job_.reset();
  }

 private:
  void grow(int helpers) {
    while (static_cast<int>(workers_.size()) < helpers) {
      workers_.emplace_back([this] { worker_loop(); });
    }
  }

  void worker_loop() {
    uint64_t seen = 0;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        job = job_;
      }
      if (job && job->joined.fetch_add(1) < job->max_helpers) run_tasks(*job);
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
  std::shared_ptr<Job> job_;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

// Heap objects that a forked child abandons (their threads do not exist there) and replaces.
std::mutex* g_pool_mutex = new std::mutex;
Pool* g_pool = nullptr;
std::atomic<int> g_default_threads{0};

void reset_after_fork() {
  g_pool_mutex = new std::mutex;
  g_pool = nullptr;
}

int cpus_available() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc ? static_cast<int>(hc) : 1;
}

int initial_default_threads() {
  static const int registered = pthread_atfork(nullptr, nullptr, reset_after_fork);
  (void)registered;
  if (const char* env = std::getenv("SOFTZO_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n >= 1) return n;
  }
  return cpus_available();
}

}  // namespace

int thread_isa_override() { return t_isa_override; }
void set_thread_isa_override(int isa) { t_isa_override = isa; }

int default_num_threads() {
  int n = g_default_threads.load(std::memory_order_relaxed);
  if (n == 0) {
    n = initial_default_threads();
    g_default_threads.store(n, std::memory_order_relaxed);
  }
  return n;
}

void set_default_num_threads(int n) {
  default_num_threads();  // registers the fork handler
  g_default_threads.store(n < 1 ? 1 : n, std::memory_order_relaxed);
}

void parallel_for(int64_t num_tasks, int num_threads, const std::function<void(int64_t)>& task) {
  if (num_tasks <= 0) return;
  const int fallback = default_num_threads();  // also registers the fork handler
  if (num_threads <= 0) num_threads = fallback;
  std::unique_lock<std::mutex> lock(*g_pool_mutex, std::try_to_lock);
  if (num_threads == 1 || num_tasks == 1 || !lock.owns_lock()) {
    for (int64_t i = 0; i < num_tasks; ++i) task(i);
    return;
  }
  if (!g_pool) g_pool = new Pool;  // lives until exit: joining at static destruction can hang
  g_pool->run(num_tasks, num_threads, task);
}

}  // namespace softzo
