"""Share multicon models on the Hugging Face Hub: save, load, push, model cards.

model.save_pretrained(folder)  /  Cls.from_pretrained(folder_or_repo_id)
save_run(folder, model, model_name=..., metrics=..., hyperparameters=...)
maybe_push(folder, args.push_to_hub)   # or model.push_to_hub(repo_id)
"""

from multicon.hub.card import build_model_card, public_hyperparameters, write_model_card
from multicon.hub.model import HubModel
from multicon.hub.push import check_repo_id, maybe_push, push_folder, resolve_token
from multicon.hub.run import HubArgs, save_run

__all__ = [
    "HubArgs",
    "HubModel",
    "build_model_card",
    "check_repo_id",
    "maybe_push",
    "public_hyperparameters",
    "push_folder",
    "resolve_token",
    "save_run",
    "write_model_card",
]
