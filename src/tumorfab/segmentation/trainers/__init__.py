"""nnU-Net trainers found through nnUNet_extTrainer (see environment.TRAINER_DIR)."""
