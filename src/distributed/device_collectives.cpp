#include "distributed/device_collectives.hpp"

#include "vae/error.hpp"

namespace vae {
namespace {

// The CPU backend's memory is the host's: MPI works on it directly.
class HostCollectives : public DeviceCollectives {
 public:
  explicit HostCollectives(const ProcessGroup& group) : group_(group) {}
  void sum(const std::vector<std::pair<float*, int64_t>>& buffers) override {
    for (const auto& [data, n] : buffers) group_.sum(data, n);
  }
  void broadcast(float* data, int64_t n, int root) override {
    group_.broadcast(data, static_cast<size_t>(n) * sizeof(float), root);
  }

 private:
  const ProcessGroup& group_;
};

}  // namespace

bool built_with_nccl() {
#ifdef VAE_WITH_NCCL
  return true;
#else
  return false;
#endif
}

std::unique_ptr<DeviceCollectives> make_device_collectives(const ProcessGroup& group, Backend& backend) {
  if (backend.device() == Device::CPU) return std::make_unique<HostCollectives>(group);
#ifdef VAE_WITH_NCCL
  return make_nccl_collectives(group, backend);
#else
  throw Error("data-parallel training on CUDA needs NCCL, and this vae was built without it (nccl.h and libnccl.so "
              "were not found beside the CUDA toolkit when it was configured); install NCCL and build again, or "
              "train with --device cpu");
#endif
}

}  // namespace vae
