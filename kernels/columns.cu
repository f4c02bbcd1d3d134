// CUDA kernel of the column-block copies and sums (math: columns.cuh).
#include "columns.cuh"
#include "for_each_cuda.cuh"

VAE_INSTANTIATE_FOR_EACH(vae::ops::SumColumns<float>);
