// CUDA kernels of the class condition (math: condition.cuh).
#include "condition.cuh"
#include "for_each_cuda.cuh"

VAE_INSTANTIATE_FOR_EACH(vae::ops::GatherLabels<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::AppendCondition<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::TakeColumns<float>);
