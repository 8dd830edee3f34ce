def task_module(task: str):
    """The LightningModule class for a datamodule's task."""
    if task == "lm":
        from .language_model import LanguageModel
        return LanguageModel
    if task == "rec":
        from .recommender import SequentialRecommender
        return SequentialRecommender
    raise ValueError(f"no task module for task {task!r} (known: lm, rec)")
