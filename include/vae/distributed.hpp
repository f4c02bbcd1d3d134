// The processes of a data-parallel job. `mpirun -np N vae train ...` starts N copies of the same
// program; each joins MPI_COMM_WORLD through ProcessGroup::world(). MPI (Debian's OpenMPI) starts the
// processes and carries host-side reductions and the CPU backend's gradient all-reduce; on CUDA the
// gradient all-reduce is NCCL's, bootstrapped through MPI (docs/distributed.md). This header
// includes no MPI or CUDA header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "vae/error.hpp"

namespace vae {

// Whether this build can join an MPI job (configured with MPI found: VAE_MPI).
bool built_with_mpi();
// Whether this build carries the CUDA backend's all-reduce (NCCL found beside the CUDA toolkit).
bool built_with_nccl();

// A failure on one rank of a job, as ProcessGroup::first_failure reports it to every rank.
struct RankFailure {
  int rank = 0;         // the lowest rank that failed
  int failed = 1;       // how many ranks failed
  int exit_code = 1;    // what that rank would have exited with
  std::string message;  // that rank's message
};

class ProcessGroup {
 public:
  // This process alone: no collective runs (what Trainer and evaluate use unless given a group).
  ProcessGroup() = default;

  // The job this process was started in. Under an MPI launcher (mpirun, mpiexec, srun with PMI) and
  // in a build with MPI: MPI_COMM_WORLD, initialised on the first call and finalised at exit. Without
  // a launcher: this process alone (MPI is not initialised). Throws JobFailed (a vae::Error, to be
  // reported by the launcher's rank 0 alone) when an MPI launcher started several processes but this
  // build has no MPI: each would train alone and write the same files.
  static ProcessGroup& world();

  // This process alone, but running every collective the trainer and the evaluator run for a group
  // (on CUDA, NCCL with one rank): the check that the collective path gives the plain path's bits.
  static ProcessGroup local_collective();

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }  // among the job's processes on this machine
  int local_size() const { return local_size_; }
  bool is_root() const { return rank_ == 0; }
  // Whether the trainer and the evaluator run their collectives: every group of a launched job,
  // even of one process (mpirun -np 1), and local_collective(); not a default group.
  bool collective() const { return collective_; }
  bool uses_mpi() const { return mpi_; }
  // This rank's contiguous share [first, end) of n items: [n r / N, n (r+1) / N). Every item has
  // one rank, shares differ by at most one, and rank order is item order.
  std::pair<int64_t, int64_t> share(int64_t n) const;

  // Collectives over host memory, called by every rank in the same order. Sums are in the ranks'
  // order and give the same bits on every rank.
  void sum(double* values, int64_t n) const;
  void sum(float* values, int64_t n) const;
  bool any(bool mine) const;
  // Whether every rank passed the same value (a checksum of the parameters, say).
  bool all_equal(uint64_t mine) const;
  // Each rank's values concatenated in rank order (counts may differ between ranks).
  std::vector<float> all_gather(const std::vector<float>& mine) const;
  // Root's bytes into every rank's buffer (n bytes on every rank).
  void broadcast(void* bytes, size_t n, int root) const;
  // Every rank says whether it failed (and how); every rank learns the lowest failing rank's
  // failure, or nullopt when none failed. What lets all ranks of a job stop together, with one
  // message, when one cannot go on (a data path missing on one machine).
  std::optional<RankFailure> first_failure(const std::optional<RankFailure>& mine) const;
  // Ends every process of the job at once (MPI_Abort) when ranks can no longer agree; a group of
  // one exits. For the CLI's last resort only: the library itself never calls it.
  [[noreturn]] void abort(int exit_code) const;

  // On CUDA, the GPU this rank uses: local_rank() made current. Throws when the machine has no GPU,
  // or fewer GPUs than the job's ranks on it (NCCL needs one per rank). Returns its index.
  int select_cuda_device() const;

  // "rank 1 of 4" (empty for a group of one).
  std::string describe() const;

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  bool collective_ = false, mpi_ = false;
};

// Thrown by every rank of a job after ProcessGroup::first_failure found a failure elsewhere or here:
// rank 0 reports `message` (naming the failing rank), the others only exit with exit_code.
class JobFailed : public Error {
 public:
  JobFailed(const std::string& message, int exit_code, bool report_here)
      : Error(message), exit_code_(exit_code), report_here_(report_here) {}
  int exit_code() const { return exit_code_; }
  bool report_here() const { return report_here_; }

 private:
  int exit_code_;
  bool report_here_;
};

// Raises JobFailed on every rank when first_failure finds one (the failing rank named in rank 0's
// message unless every rank failed the same way); returns when every rank succeeded.
void raise_first_failure(const ProcessGroup& group, const std::optional<RankFailure>& mine);

}  // namespace vae
