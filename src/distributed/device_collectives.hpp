// The trainer's collectives over the backend's memory: the all-reduce of the flat gradient (and the
// step's loss) and the broadcast of the starting parameters. They are queued on the backend in
// program order, like every other operation of a step:
//   CPU:  MPI_Allreduce / MPI_Bcast on the buffers, made when queued (the CPU backend runs work as
//         it is queued, and a recorded CPU step replays its closure, so the calls replay too);
//   CUDA: ncclAllReduce / ncclBroadcast on the backend's stream, one NCCL group per call, which a
//         recorded step (a CUDA graph) captures with the kernels around it.
// Bytes moved per sum: a ring all-reduce sends and receives 2 (N-1)/N of each buffer per rank.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "backend/backend.hpp"
#include "vae/distributed.hpp"

namespace vae {

class DeviceCollectives {
 public:
  virtual ~DeviceCollectives() = default;
  // Sums each buffer (backend memory, n floats) over the group's ranks, in place.
  virtual void sum(const std::vector<std::pair<float*, int64_t>>& buffers) = 0;
  // Root's n floats into every rank's buffer.
  virtual void broadcast(float* data, int64_t n, int root) = 0;
};

// The collectives of `group` on `backend`'s device. On CUDA this creates the NCCL communicator,
// a collective call itself: every rank must make it at the same point.
std::unique_ptr<DeviceCollectives> make_device_collectives(const ProcessGroup& group, Backend& backend);

#ifdef VAE_WITH_NCCL
std::unique_ptr<DeviceCollectives> make_nccl_collectives(const ProcessGroup& group, Backend& backend);
#endif

}  // namespace vae
