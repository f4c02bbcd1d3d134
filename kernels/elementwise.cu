// CUDA kernels of the small element-wise operations (math: elementwise.cuh).
#include "elementwise.cuh"
#include "for_each_cuda.cuh"

VAE_INSTANTIATE_FOR_EACH(vae::ops::Sigmoid<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::Clamp01<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::Fill<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::NormalFill<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::AccumulateScaled<float>);
