// DeviceCollectives on CUDA: NCCL on the backend's stream. The communicator is bootstrapped through
// the process group (rank 0's ncclUniqueId broadcast over MPI; a group of one needs no broadcast).
// NCCL calls are captured into CUDA graphs (NCCL 2.9+), so a recorded training step holds its
// all-reduce between the backward kernels and the optimizer kernel.
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>

#include "distributed/device_collectives.hpp"
#include "vae/error.hpp"

namespace vae {
namespace {

void nccl_check(ncclResult_t status, const char* what) {
  if (status == ncclSuccess) return;
  std::string hint = "check that every rank of the job runs on its own GPU and is still running";
  if (status == ncclSystemError || status == ncclRemoteError)
    hint = "a network or another rank failed; NCCL_DEBUG=WARN says more";
  throw Error(std::string("NCCL error in ") + what + ": " + ncclGetErrorString(status) + "; " + hint);
}

class NcclCollectives : public DeviceCollectives {
 public:
  NcclCollectives(const ProcessGroup& group, Backend& backend)
      : stream_(static_cast<cudaStream_t>(backend.native_stream())) {
    ncclUniqueId id{};
    if (group.is_root()) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    group.broadcast(&id, sizeof id, 0);
    nccl_check(ncclCommInitRank(&comm_, group.size(), id, group.rank()), "ncclCommInitRank");
  }
  ~NcclCollectives() override { ncclCommDestroy(comm_); }
  NcclCollectives(const NcclCollectives&) = delete;
  NcclCollectives& operator=(const NcclCollectives&) = delete;

  void sum(const std::vector<std::pair<float*, int64_t>>& buffers) override {
    // One group: NCCL fuses the buffers' all-reduces into one launch.
    nccl_check(ncclGroupStart(), "ncclGroupStart");
    for (const auto& [data, n] : buffers)
      nccl_check(ncclAllReduce(data, data, static_cast<size_t>(n), ncclFloat, ncclSum, comm_, stream_), "ncclAllReduce");
    nccl_check(ncclGroupEnd(), "ncclGroupEnd (the gradient all-reduce)");
  }
  void broadcast(float* data, int64_t n, int root) override {
    nccl_check(ncclBroadcast(data, data, static_cast<size_t>(n), ncclFloat, root, comm_, stream_), "ncclBroadcast");
  }

 private:
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_;
};

}  // namespace

std::unique_ptr<DeviceCollectives> make_nccl_collectives(const ProcessGroup& group, Backend& backend) {
  return std::make_unique<NcclCollectives>(group, backend);
}

}  // namespace vae
