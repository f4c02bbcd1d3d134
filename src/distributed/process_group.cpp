// ProcessGroup over MPI_COMM_WORLD (OpenMPI from Debian), or this process alone in a build without
// MPI. Every collective here is a plain MPI call on host memory; sums go through MPI_Allreduce,
// whose result MPI implementations make identical on every rank (OpenMPI's algorithms reduce each
// element once, or symmetrically, in a fixed order for a fixed job size).
#include "vae/distributed.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backend/cuda/cuda_runtime.hpp"

#ifdef VAE_WITH_MPI
#include <mpi.h>
#endif

namespace vae {
namespace {

// The environment an MPI launcher gives its processes: OpenMPI's mpirun, MPICH/Hydra's mpiexec,
// PMIx and Slurm's srun with PMI. Returns the job size it announces (0 when it does not say), or -1
// when no launcher started this process.
int launcher_job_size() {
  for (const char* key : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"}) {
    if (const char* v = std::getenv(key)) return std::max(0, std::atoi(v));
  }
  for (const char* key : {"PMIX_RANK", "PMI_RANK"}) {
    if (std::getenv(key)) return std::getenv("SLURM_NTASKS") ? std::max(0, std::atoi(std::getenv("SLURM_NTASKS"))) : 0;
  }
  return -1;
}

#ifndef VAE_WITH_MPI
// This process's rank as the launcher announces it (0 when it does not say).
int launcher_rank() {
  for (const char* key : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"})
    if (const char* v = std::getenv(key)) return std::max(0, std::atoi(v));
  return 0;
}
#endif

#ifdef VAE_WITH_MPI
void mpi_check(int status, const char* what) {
  if (status == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(status, text, &length);
  throw Error(std::string("MPI error in ") + what + ": " + std::string(text, static_cast<size_t>(length)) +
              "; check that every process of the job is still running (mpirun names the one that stopped)");
}

// Finalises MPI when the program ends normally (static destruction), after everything else.
struct MpiSession {
  ~MpiSession() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
};

// MPI counts are ints: longer buffers go in pieces.
constexpr int64_t kMaxMpiCount = int64_t{1} << 30;
#endif

}  // namespace

bool built_with_mpi() {
#ifdef VAE_WITH_MPI
  return true;
#else
  return false;
#endif
}

ProcessGroup& ProcessGroup::world() {
  static ProcessGroup group = [] {
    ProcessGroup g;
    const int announced = launcher_job_size();
    if (announced < 0) return g;
#ifdef VAE_WITH_MPI
    static MpiSession session;
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      mpi_check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    }
    // Errors come back as codes (mpi_check turns them into vae::Error) instead of aborting the job
    // from inside MPI with its own message.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g.rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &g.size_);
    MPI_Comm local;
    mpi_check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g.rank_, MPI_INFO_NULL, &local),
              "MPI_Comm_split_type");
    MPI_Comm_rank(local, &g.local_rank_);
    MPI_Comm_size(local, &g.local_size_);
    MPI_Comm_free(&local);
    g.collective_ = true;
    g.mpi_ = true;
    return g;
#else
    // Every process of the job finds this; the launcher's rank 0 alone says it.
    if (announced != 1)
      throw JobFailed("this vae was built without MPI, but an MPI launcher (mpirun) started it as one of " +
                  (announced > 0 ? std::to_string(announced) : std::string("several")) +
                  " processes: each would train alone and write the same files. Install OpenMPI (apt-get install "
                  "libopenmpi-dev openmpi-bin, as scripts/install-deps.sh does) and build again (cmake reports "
                  "\"vae: MPI ON\"), or run vae without mpirun", 1, launcher_rank() == 0);
    return g;
#endif
  }();
  return group;
}

ProcessGroup ProcessGroup::local_collective() {
  ProcessGroup g;
  g.collective_ = true;
  return g;
}

#ifdef VAE_WITH_MPI
namespace {
// In place, in pieces of at most kMaxMpiCount values (MPI counts are ints).
template <class T>
void sum_in_place(T* values, int64_t n, MPI_Datatype type) {
  for (int64_t first = 0; first < n; first += kMaxMpiCount)
    mpi_check(MPI_Allreduce(MPI_IN_PLACE, values + first, static_cast<int>(std::min(kMaxMpiCount, n - first)), type,
                            MPI_SUM, MPI_COMM_WORLD),
              "the sum over ranks (MPI_Allreduce)");
}
}  // namespace
#endif

void ProcessGroup::sum([[maybe_unused]] double* values, [[maybe_unused]] int64_t n) const {
#ifdef VAE_WITH_MPI
  if (mpi_) sum_in_place(values, n, MPI_DOUBLE);
#endif
}

void ProcessGroup::sum([[maybe_unused]] float* values, [[maybe_unused]] int64_t n) const {
#ifdef VAE_WITH_MPI
  if (mpi_) sum_in_place(values, n, MPI_FLOAT);
#endif
}

std::pair<int64_t, int64_t> ProcessGroup::share(int64_t n) const {
  return {n * rank_ / size_, n * (rank_ + 1) / size_};
}

bool ProcessGroup::any(bool mine) const {
  if (!mpi_) return mine;
  int v = mine ? 1 : 0;
#ifdef VAE_WITH_MPI
  mpi_check(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce (any)");
#endif
  return v != 0;
}

bool ProcessGroup::all_equal(uint64_t mine) const {
  if (!mpi_) return true;
  uint64_t lo = mine, hi = mine;
#ifdef VAE_WITH_MPI
  mpi_check(MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD), "MPI_Allreduce (min)");
  mpi_check(MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce (max)");
#endif
  return lo == hi;
}

std::vector<float> ProcessGroup::all_gather(const std::vector<float>& mine) const {
  if (!mpi_) return mine;
#ifdef VAE_WITH_MPI
  if (mine.size() > static_cast<size_t>(kMaxMpiCount)) throw Error("all_gather: more than 2^30 values from one rank");
  std::vector<int> counts(static_cast<size_t>(size_)), offsets(static_cast<size_t>(size_));
  int count = static_cast<int>(mine.size());
  mpi_check(MPI_Allgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD), "MPI_Allgather (counts)");
  int64_t total = 0;
  for (int r = 0; r < size_; ++r) {
    if (total > kMaxMpiCount) throw Error("all_gather: more than 2^30 values in all");
    offsets[static_cast<size_t>(r)] = static_cast<int>(total);
    total += counts[static_cast<size_t>(r)];
  }
  if (total > kMaxMpiCount) throw Error("all_gather: more than 2^30 values in all");
  std::vector<float> out(static_cast<size_t>(total));
  mpi_check(MPI_Allgatherv(mine.data(), count, MPI_FLOAT, out.data(), counts.data(), offsets.data(), MPI_FLOAT,
                           MPI_COMM_WORLD),
            "MPI_Allgatherv");
  return out;
#else
  return mine;
#endif
}

void ProcessGroup::broadcast(void* bytes, size_t n, int root) const {
  if (!mpi_ || n == 0) return;
#ifdef VAE_WITH_MPI
  if (n > static_cast<size_t>(kMaxMpiCount)) throw Error("broadcast: more than 2^30 bytes");
  mpi_check(MPI_Bcast(bytes, static_cast<int>(n), MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
#else
  (void)bytes, (void)root;
#endif
}

std::optional<RankFailure> ProcessGroup::first_failure(const std::optional<RankFailure>& mine) const {
  if (!mpi_) {
    if (!mine) return std::nullopt;
    RankFailure f = *mine;
    f.rank = rank_, f.failed = 1;
    return f;
  }
  // The lowest failing rank (size_ when none) and the number of failures, then that rank's code and
  // message broadcast from it.
  int lowest = mine ? rank_ : size_, failed = mine ? 1 : 0;
#ifdef VAE_WITH_MPI
  mpi_check(MPI_Allreduce(MPI_IN_PLACE, &lowest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD), "MPI_Allreduce (failures)");
  mpi_check(MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce (failures)");
#endif
  if (lowest == size_) return std::nullopt;
  RankFailure f;
  f.rank = lowest;
  f.failed = failed;
  int64_t header[2] = {0, 0};
  if (rank_ == lowest) header[0] = mine->exit_code, header[1] = static_cast<int64_t>(mine->message.size());
  broadcast(header, sizeof header, lowest);
  f.exit_code = static_cast<int>(header[0]);
  f.message.resize(static_cast<size_t>(header[1]));
  if (rank_ == lowest) f.message = mine->message;
  broadcast(f.message.data(), f.message.size(), lowest);
  return f;
}

void ProcessGroup::abort(int exit_code) const {
#ifdef VAE_WITH_MPI
  if (mpi_) MPI_Abort(MPI_COMM_WORLD, exit_code);
#endif
  std::exit(exit_code);
}

int ProcessGroup::select_cuda_device() const {
  const int count = cuda::device_count();
  if (count < 1) throw Error("no CUDA GPU for " + (describe().empty() ? std::string("this process") : describe()) + ": " +
                             cuda::device_status() + "; run with --device cpu");
  // NCCL refuses two ranks of one communicator on the same GPU.
  if (mpi_ && local_size_ > count)
    throw Error("this machine runs " + std::to_string(local_size_) + " ranks of the job but has " + std::to_string(count) +
                " CUDA GPU(s), and NCCL needs a GPU of its own for each rank: start at most " + std::to_string(count) +
                " ranks per machine (mpirun --map-by ppr:" + std::to_string(count) + ":node), or train with --device cpu");
  const int index = local_rank_ % count;  // local_size_ <= count: each rank its own GPU
  cuda::set_device(index);
  return index;
}

std::string ProcessGroup::describe() const {
  if (!mpi_) return {};
  return "rank " + std::to_string(rank_) + " of " + std::to_string(size_);
}

void raise_first_failure(const ProcessGroup& group, const std::optional<RankFailure>& mine) {
  const std::optional<RankFailure> f = group.first_failure(mine);
  if (!f) return;
  std::string message = f->message;
  if (group.size() > 1 && f->failed < group.size())
    message = "rank " + std::to_string(f->rank) + " of " + std::to_string(group.size()) + " failed, so the job stops: " +
              f->message;
  throw JobFailed(message, f->exit_code, group.is_root());
}

}  // namespace vae
