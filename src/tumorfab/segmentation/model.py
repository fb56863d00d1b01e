"""An exported nnU-Net model folder (``train.export_model``) loaded as a network.

nnU-Net rebuilds a trained network through its trainer class, which it finds
by name (``recursive_find_trainer_class_by_name``), importing every trainer
module it ships on the way: 1-3 s of CPU in each job that loads a model
(prediction, TF-Aug's fit, TF-GAN). ``nnUNetTrainerTumorfab`` keeps
nnUNetTrainer's network (``build_network_architecture`` is not overridden; a
test checks it), so a model of ours is built here as nnUNetTrainer builds it,
with nnU-Net's ``get_network_from_plans``; a model from another trainer goes
through nnU-Net's lookup.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from tumorfab.segmentation.environment import TRAINER_NAME, nnunet_environment
from tumorfab.segmentation.train import FOLD


@dataclass
class TrainedModel:
    network: object  # torch.nn.Module, weights loaded, in eval mode
    checkpoint: dict  # checkpoint_final.pth as saved by nnU-Net
    plans_manager: object  # nnunetv2 PlansManager
    configuration: object  # nnunetv2 ConfigurationManager of the trained configuration
    dataset_json: dict


def load_trained_model(model_dir: str | os.PathLike, deep_supervision: bool = False) -> TrainedModel:
    """The network of ``model_dir/fold_all/checkpoint_final.pth`` (on the CPU) and what describes it."""
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    model_dir = Path(model_dir)
    checkpoint = torch.load(model_dir / f"fold_{FOLD}" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    dataset_json = json.loads((model_dir / "dataset.json").read_text())
    plans_manager = PlansManager(json.loads((model_dir / "plans.json").read_text()))
    configuration = plans_manager.get_configuration(checkpoint["init_args"]["configuration"])
    arguments = (
        determine_num_input_channels(plans_manager, configuration, dataset_json),
        plans_manager.get_label_manager(dataset_json).num_segmentation_heads,
    )
    if checkpoint["trainer_name"] == TRAINER_NAME:
        network = get_network_from_plans(
            configuration.network_arch_class_name,
            configuration.network_arch_init_kwargs,
            configuration.network_arch_init_kwargs_req_import,
            *arguments,
            allow_init=True,
            deep_supervision=deep_supervision,
        )
    else:
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

        with nnunet_environment():
            trainer_class = recursive_find_trainer_class_by_name(checkpoint["trainer_name"])
        network = trainer_class.build_network_architecture(
            plans_manager, configuration, *arguments, enable_deep_supervision=deep_supervision
        )
    network.load_state_dict(checkpoint["network_weights"])
    network.eval()
    return TrainedModel(network, checkpoint, plans_manager, configuration, dataset_json)
