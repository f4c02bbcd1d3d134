// Builds a small VAE through the public API, takes a few optimizer steps on synthetic images,
// samples from it and writes a checkpoint that it reads back.
#include <cstdio>
#include <vector>

#include <vae/vae.hpp>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT.safetensors\n", argv[0]);
    return 2;
  }
  try {
    vae::ModelConfig config;
    config.image_height = 8;
    config.image_width = 8;
    config.encoder.hidden = {32};
    config.latent = 4;
    vae::Model model(config);
    model.initialize(/*seed=*/7);

    // Two kinds of synthetic 8x8 images: left half lit, or right half lit.
    const int rows = 16;
    std::vector<float> images(static_cast<size_t>(rows) * 64);
    for (int r = 0; r < rows; ++r)
      for (int i = 0; i < 64; ++i) images[static_cast<size_t>(r) * 64 + i] = ((i % 8 < 4) == (r % 2 == 0)) ? 1.0f : 0.0f;

    vae::TrainConfig train;
    train.lr = 3e-3f;
    vae::Trainer trainer(model, train);
    const double first = trainer.step(images, rows);
    double last = first;
    for (int s = 0; s < 200; ++s) last = trainer.step(images, rows);
    std::printf("loss %.2f -> %.2f over 200 steps, %lld parameters\n", first, last,
                static_cast<long long>(model.parameter_count()));

    const vae::Tensor samples = vae::sample_images(model, 4, 1.0f, /*seed=*/1);
    vae::save_checkpoint(model, argv[1]);
    vae::Model again = vae::load_checkpoint(argv[1]);
    std::printf("sampled %lld pixels; reloaded %zu tensors\n", static_cast<long long>(samples.numel()),
                again.named_parameters().size());
    return last < first ? 0 : 1;
  } catch (const vae::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
