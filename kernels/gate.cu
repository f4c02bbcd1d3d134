// CUDA kernels of the gated linear unit (math: gate.cuh).
#include "for_each_cuda.cuh"
#include "gate.cuh"

VAE_INSTANTIATE_FOR_EACH(vae::ops::GateForward<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::GateBackward<float>);
