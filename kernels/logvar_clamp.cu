// CUDA kernels of the bounded log-variance (math: logvar_clamp.cuh).
#include "for_each_cuda.cuh"
#include "logvar_clamp.cuh"

VAE_INSTANTIATE_FOR_EACH(vae::ops::LogvarClampForward<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::LogvarClampBackward<float>);
