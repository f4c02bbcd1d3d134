// CUDA kernel of the softmax cross-entropy (math: softmax_xent.cuh).
#include "for_each_cuda.cuh"
#include "softmax_xent.cuh"

VAE_INSTANTIATE_FOR_EACH(vae::ops::SoftmaxXent<float>);
