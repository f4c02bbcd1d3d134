// vae_gpu_probe: the smallest CUDA program that proves a device works, for scripts/gpu-check.sh.
// It allocates, launches one kernel, copies back and checks every element, printing the device, the
// driver and the runtime. gpu-check.sh runs it bare (is there a usable GPU?), then under
// compute-sanitizer and ncu (does each tool accept this device?), before any of our own code runs
// under them: a tool that refuses the device then marks its phase SKIPPED with the tool's own words,
// instead of failing the phase as if our kernels were wrong.
// Exit codes: 0 works; 2 no usable device or driver; 1 anything else (a wrong result, a failed call).
//
// vae_gpu_probe --libraries NAME...: for each shared library named (libcublasLt.so.13, libcudnn.so.9,
// libnccl.so.2), the file the dynamic loader resolves it to under this process's library path (the
// one our binaries run with) and the version that file reports of itself (cublasLtGetVersion,
// cudnnGetVersion, ncclGetVersion), one line each; needs no GPU. Exit 1 if any cannot be loaded.
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <link.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

__global__ void write_pattern(unsigned* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = 3u * static_cast<unsigned>(i) + 1u;
}

int fail(const char* what, cudaError_t status) {
  std::fprintf(stderr, "vae_gpu_probe: %s failed: %s (%s)\n", what, cudaGetErrorName(status), cudaGetErrorString(status));
  return 1;
}

// The version the library reports, by the first version function it exports, as text.
void library_version(void* handle, char* out, size_t size) {
  using SizeVersion = size_t (*)();
  using IntVersion = int (*)(int*);  // ncclResult_t ncclGetVersion(int*): 0 is ncclSuccess
  for (const char* fn : {"cublasLtGetVersion", "cudnnGetVersion"})
    if (void* f = dlsym(handle, fn)) {
      std::snprintf(out, size, "%s() = %zu", fn, reinterpret_cast<SizeVersion>(f)());
      return;
    }
  if (void* f = dlsym(handle, "ncclGetVersion")) {
    int v = 0;
    if (reinterpret_cast<IntVersion>(f)(&v) == 0) {
      std::snprintf(out, size, "ncclGetVersion() = %d", v);
      return;
    }
  }
  std::snprintf(out, size, "no version function");
}

int libraries(int count, char** names) {
  int status = 0;
  for (int i = 0; i < count; ++i) {
    void* handle = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      std::printf("vae_gpu_probe: library %s: NOT LOADED: %s\n", names[i], dlerror());
      status = 1;
      continue;
    }
    link_map* map = nullptr;
    char resolved[PATH_MAX] = "?", version[128] = "";
    if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map && map->l_name &&
        !realpath(map->l_name, resolved))
      std::snprintf(resolved, sizeof resolved, "%s", map->l_name);
    library_version(handle, version, sizeof version);
    std::printf("vae_gpu_probe: library %s: %s (%s)\n", names[i], resolved, version);
    // Not closed: closing cuDNN or NCCL mid-process has been seen to crash at exit.
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "--libraries") == 0) return libraries(argc - 2, argv + 2);
  int driver = 0, runtime = 0, count = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  const cudaError_t counted = cudaGetDeviceCount(&count);
  if (counted != cudaSuccess || count == 0) {
    // The runtime calls a missing driver "insufficient" too: a driver version of 0 means none.
    const char* why = driver == 0              ? "no NVIDIA driver is loaded (is there a GPU on this machine?)"
                      : counted == cudaSuccess ? "the driver sees no GPU"
                                               : cudaGetErrorString(counted);
    std::fprintf(stderr, "vae_gpu_probe: no usable CUDA device: %s (driver API %d, runtime %d)\n", why, driver, runtime);
    return 2;
  }
  cudaDeviceProp prop{};
  if (const cudaError_t s = cudaGetDeviceProperties(&prop, 0); s != cudaSuccess) return fail("cudaGetDeviceProperties", s);
  std::printf("vae_gpu_probe: %d device(s); device 0: %s, compute capability %d.%d, %d SMs, %.1f GiB, L2 %d MiB; "
              "driver API %d.%d, runtime %d.%d\n",
              count, prop.name, prop.major, prop.minor, prop.multiProcessorCount,
              static_cast<double>(prop.totalGlobalMem) / (1u << 30), prop.l2CacheSize >> 20, driver / 1000,
              driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);

  constexpr int n = 1 << 20;
  unsigned* device_out = nullptr;
  if (const cudaError_t s = cudaMalloc(&device_out, n * sizeof(unsigned)); s != cudaSuccess) return fail("cudaMalloc", s);
  write_pattern<<<(n + 255) / 256, 256>>>(device_out, n);
  if (const cudaError_t s = cudaGetLastError(); s != cudaSuccess) return fail("the kernel launch", s);
  std::vector<unsigned> host(n, 0xDEADBEEFu);  // poisoned: an unwritten element cannot pass
  if (const cudaError_t s = cudaMemcpy(host.data(), device_out, n * sizeof(unsigned), cudaMemcpyDeviceToHost);
      s != cudaSuccess)
    return fail("cudaMemcpy", s);
  if (const cudaError_t s = cudaFree(device_out); s != cudaSuccess) return fail("cudaFree", s);
  for (int i = 0; i < n; ++i) {
    if (host[i] != 3u * static_cast<unsigned>(i) + 1u) {
      std::fprintf(stderr, "vae_gpu_probe: element %d is %u, expected %u\n", i, host[i], 3u * static_cast<unsigned>(i) + 1u);
      return 1;
    }
  }
  std::printf("vae_gpu_probe: a kernel wrote %d elements and every one read back right\n", n);
  return 0;
}
