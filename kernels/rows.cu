// CUDA kernels of the row-wise moves and scalings (math: rows.cuh).
#include "for_each_cuda.cuh"
#include "rows.cuh"

VAE_INSTANTIATE_FOR_EACH(vae::ops::RepeatRows<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::ScaleRows<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::CopyValues<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::ScaleValues<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::UnitClampBackward<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::AddScaled<float>);
