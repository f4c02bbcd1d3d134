// CUDA kernels of the pixels drawn from the 8-bit likelihoods (math: pixel_sample.cuh).
#include "for_each_cuda.cuh"
#include "pixel_sample.cuh"

VAE_INSTANTIATE_FOR_EACH(vae::ops::LogisticPixelSample<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::DmolPixelSample<float>);
