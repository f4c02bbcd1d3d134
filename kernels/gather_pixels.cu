// CUDA kernel of the batch gather and binarisation (math: gather_pixels.cuh).
#include "for_each_cuda.cuh"
#include "gather_pixels.cuh"

VAE_INSTANTIATE_FOR_ROWS(vae::ops::GatherPixels);
