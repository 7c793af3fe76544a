"""`mmdemo eval --task T ...`: runs the task's recipe (mmdemo/recipes/) with the arguments."""

from mmdemo.recipes import recipe_for


def main(argv: list[str] | None = None) -> dict:
    return recipe_for(argv).evaluate(argv)
