// The gearman peer, on libgearman: a no-op worker, or a client that submits N foreground jobs
// (up to K at once) to gearmand and waits for them all.
//   gearman_bench worker PORT
//   gearman_bench client PORT N K      prints {"scenario":"gearman","per_second":...}
#include <libgearman/gearman.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

gearman_return_t NoOp(gearman_job_st*, void*) { return GEARMAN_SUCCESS; }

int RunWorker(in_port_t port) {
  gearman_worker_st* worker = gearman_worker_create(nullptr);
  if (worker == nullptr ||
      gearman_worker_add_server(worker, "127.0.0.1", port) != GEARMAN_SUCCESS) {
    return 1;
  }
  gearman_function_t noop = gearman_function_create(NoOp);
  if (gearman_worker_define_function(worker, "noop", 4, noop, 0, nullptr) != GEARMAN_SUCCESS) {
    return 1;
  }
  while (true) {
    const gearman_return_t ret = gearman_worker_work(worker);
    if (ret != GEARMAN_SUCCESS) {
      std::fprintf(stderr, "gearman_bench worker: %s\n", gearman_worker_error(worker));
      return 1;
    }
  }
}

int RunClient(in_port_t port, long count, long inflight) {
  gearman_client_st* client = gearman_client_create(nullptr);
  if (client == nullptr ||
      gearman_client_add_server(client, "127.0.0.1", port) != GEARMAN_SUCCESS) {
    return 1;
  }
  const auto start = std::chrono::steady_clock::now();
  for (long done = 0; done < count;) {
    const long now = std::min(inflight, count - done);
    for (long i = 0; i < now; ++i) {
      // (libgearman refuses an empty workload: one byte, as a no-op task's argument.)
      gearman_return_t ret;
      if (gearman_client_add_task(client, nullptr, nullptr, "noop", nullptr, "x", 1, &ret) ==
              nullptr ||
          ret != GEARMAN_SUCCESS) {
        std::fprintf(stderr, "gearman_bench client: %s\n", gearman_client_error(client));
        return 1;
      }
    }
    if (gearman_client_run_tasks(client) != GEARMAN_SUCCESS) {
      std::fprintf(stderr, "gearman_bench client: %s\n", gearman_client_error(client));
      return 1;
    }
    done += now;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("{\"scenario\":\"gearman\",\"per_second\":%.6g}\n",
              static_cast<double>(count) / seconds);
  gearman_client_free(client);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[1]) == "worker")
    return RunWorker(static_cast<in_port_t>(std::atoi(argv[2])));
  if (argc >= 5 && std::string(argv[1]) == "client") {
    return RunClient(static_cast<in_port_t>(std::atoi(argv[2])), std::atol(argv[3]),
                     std::atol(argv[4]));
  }
  std::fprintf(stderr, "usage: gearman_bench worker PORT | client PORT N K\n");
  return 2;
}
