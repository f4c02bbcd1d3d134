// CUDA kernels of the activations (math: activation.cuh), one per activation and direction.
#include "activation.cuh"
#include "for_each_cuda.cuh"

#define VAE_INSTANTIATE_ACTIVATION(A)                                                  \
  VAE_INSTANTIATE_FOR_EACH(vae::ops::ActivationForward<float, vae::math::Act::A>);  \
  VAE_INSTANTIATE_FOR_EACH(vae::ops::ActivationBackward<float, vae::math::Act::A>)

VAE_INSTANTIATE_ACTIVATION(Identity);
VAE_INSTANTIATE_ACTIVATION(ReLU);
VAE_INSTANTIATE_ACTIVATION(LeakyReLU);
VAE_INSTANTIATE_ACTIVATION(Tanh);
VAE_INSTANTIATE_ACTIVATION(SiLU);
