// CUDA kernels of the mixture of discretized logistics and its picture (math: dmol_nll.cuh).
#include "dmol_nll.cuh"
#include "for_each_cuda.cuh"

VAE_INSTANTIATE_FOR_ROWS(vae::ops::DmolNll<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::DmolImage<float>);
