"""The names of the embedded tasks, for planning: importing this module imports nothing else
(the workflow lists the tasks at parse time, which must not import the audio stack). The
builders that make them are registered under exactly these names in
:data:`abt.data.embedded.tasks.TASKS`, which checks that the two agree when it is imported."""

TASK_NAMES = (
    "embedded_emotion",
    "embedded_envsounds",
    "embedded_genre",
    "embedded_keywords",
    "embedded_office_events",
    "embedded_pitch",
    "embedded_speakercount",
)


def check_task_names(names: list[str] | tuple[str, ...], key: str = "embedded.tasks") -> None:
    """A ``KeyError`` naming the first unknown task, the config key and the known ones."""
    for n in names:
        if n not in TASK_NAMES:
            raise KeyError(f"unknown embedded task {n!r} in {key}; known: {', '.join(TASK_NAMES)}")
