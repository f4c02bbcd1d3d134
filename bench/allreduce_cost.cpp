// The gradient all-reduce alone, as a data-parallel CPU step makes it: ProcessGroup::sum over a
// flat float buffer (MPI_Allreduce in place), for the default model's 1,091,920 parameters and
// other sizes. Every rank must make the same calls, so the rounds are fixed (50 after 5 warm-ups)
// rather than Google Benchmark's adaptive count. Rank 0 prints, per size: the bytes, the median and
// fastest call, and the bus bandwidth 2 (N-1)/N * bytes / t (as nccl-tests reports it).
//
//   mpirun -np 2 build/bench/vae_allreduce_cost [floats ...]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "vae/distributed.hpp"

int main(int argc, char** argv) {
  const vae::ProcessGroup& g = vae::ProcessGroup::world();
  std::vector<long long> sizes;
  for (int i = 1; i < argc; ++i) sizes.push_back(std::atoll(argv[i]));
  if (sizes.empty()) sizes = {1091920, 51416, 1700609, 16 << 20};
  if (g.is_root())
    std::printf("ranks %d (%d on this machine); MPI %s\n%12s %12s %12s %12s %10s\n", g.size(), g.local_size(),
                g.uses_mpi() ? "yes" : "no (one process: nothing moves)", "floats", "bytes", "median_s", "min_s", "busbw_GB/s");
  for (const long long n : sizes) {
    std::vector<float> buffer(static_cast<size_t>(n), 1.0f);
    std::vector<double> times;
    for (int round = 0; round < 55; ++round) {
      g.any(false);  // line the ranks up
      const auto t0 = std::chrono::steady_clock::now();
      g.sum(buffer.data(), n);
      const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (round >= 5) times.push_back(t);
    }
    // The slowest rank's time each round is the step's: the maximum over ranks, from every rank's times.
    const std::vector<float> every = g.all_gather(std::vector<float>(times.begin(), times.end()));
    std::vector<double> step(times.size(), 0.0);
    for (size_t r = 0; r < static_cast<size_t>(g.size()); ++r)
      for (size_t i = 0; i < times.size(); ++i) step[i] = std::max(step[i], double(every[r * times.size() + i]));
    std::sort(step.begin(), step.end());
    const double bytes = 4.0 * static_cast<double>(n);
    const double median = step[step.size() / 2], fastest = step.front();
    const double busbw = g.size() > 1 ? 2.0 * (g.size() - 1) / g.size() * bytes / median / 1e9 : 0.0;
    if (g.is_root()) std::printf("%12lld %12.0f %12.3g %12.3g %10.2f\n", n, bytes, median, fastest, busbw);
  }
  return 0;
}
