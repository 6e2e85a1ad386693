"""The error tree: stable codes, exit codes, HTTP statuses and rendering."""

from __future__ import annotations

import builtins

import pytest

from fedloop.core import errors
from fedloop.core.errors import (
    ArtifactMissing,
    ConfigError,
    Conflict,
    FedloopError,
    InvalidInput,
    MissingExtraError,
    NotFound,
    RoundTimeout,
    StoreUnavailable,
)

ERROR_CLASSES: list[type[FedloopError]] = [
    obj for obj in vars(errors).values() if isinstance(obj, type) and issubclass(obj, FedloopError)
]


def test_error_module_defines_the_tree() -> None:
    """The module holds the root and at least the documented subclasses."""
    # Act
    names = {cls.__name__ for cls in ERROR_CLASSES}

    # Assert
    assert FedloopError in ERROR_CLASSES
    assert {"ConfigError", "InvalidInput", "NotFound", "Conflict", "StoreUnavailable"} <= names


def test_codes_are_unique() -> None:
    """No two error classes share a code."""
    # Act
    codes = [cls.code for cls in ERROR_CLASSES]

    # Assert
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("cls", [pytest.param(c, id=c.__name__) for c in ERROR_CLASSES])
def test_class_sets_its_own_code(cls: type[FedloopError]) -> None:
    """Every class defines a non-empty snake_case code of its own."""
    # Act
    code = cls.__dict__.get("code")

    # Assert
    assert isinstance(code, str)
    assert code
    assert code == code.lower()
    assert " " not in code


@pytest.mark.parametrize("cls", [pytest.param(c, id=c.__name__) for c in ERROR_CLASSES])
def test_class_has_int_exit_code_and_http_status(cls: type[FedloopError]) -> None:
    """Every class has an int exit code in 1..125 and an HTTP error status."""
    # Act
    exit_code, status = cls.exit_code, cls.http_status

    # Assert
    assert type(exit_code) is int
    assert 1 <= exit_code <= 125
    assert type(status) is int
    assert 400 <= status <= 599


@pytest.mark.parametrize("cls", [pytest.param(c, id=c.__name__) for c in ERROR_CLASSES])
def test_class_is_drawn_in_module_docstring(cls: type[FedloopError]) -> None:
    """The module docstring's tree names every class."""
    # Act / Assert
    assert errors.__doc__ is not None
    assert cls.__name__ in errors.__doc__


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        pytest.param(ConfigError, ValueError, id="ConfigError"),
        pytest.param(InvalidInput, ValueError, id="InvalidInput"),
        pytest.param(NotFound, LookupError, id="NotFound"),
        pytest.param(ArtifactMissing, LookupError, id="ArtifactMissing"),
        pytest.param(StoreUnavailable, ConnectionError, id="StoreUnavailable"),
        pytest.param(MissingExtraError, ImportError, id="MissingExtraError"),
        pytest.param(RoundTimeout, TimeoutError, id="RoundTimeout"),
    ],
)
def test_error_is_also_its_builtin(cls: type[FedloopError], builtin: type[Exception]) -> None:
    """Errors also inherit the built-in exception they really are."""
    # Act / Assert
    assert issubclass(cls, builtin)
    assert builtin.__module__ == builtins.__name__


def test_only_store_unavailable_is_retryable() -> None:
    """StoreUnavailable is retryable; a plain InvalidInput is not."""
    # Act / Assert
    assert StoreUnavailable.retryable
    assert not InvalidInput.retryable


def test_subclass_without_code_raises_type_error() -> None:
    """Defining a subclass without its own code fails at class creation."""
    # Act / Assert
    with pytest.raises(TypeError, match=r"NoCode must set a class attribute `code`"):

        class NoCode(Conflict):
            """Forgets its code."""


def test_subclass_with_code_is_accepted() -> None:
    """A subclass with a code is an ordinary error class."""

    # Arrange
    class WithCode(Conflict):
        """Has a code."""

        code = "with_code"

    # Act
    err = WithCode("taken")

    # Assert
    assert (err.code, err.exit_code, err.http_status) == ("with_code", 4, 409)


def test_attributes_hold_field_value_and_hint() -> None:
    """field, value and hint are kept as attributes."""
    # Act
    err = InvalidInput("bad lr", field="lr", value=-1, hint="Use a positive lr.")

    # Assert
    assert (err.message, err.field, err.value, err.hint) == (
        "bad lr",
        "lr",
        -1,
        "Use a positive lr.",
    )


def test_to_dict_has_api_shape() -> None:
    """to_dict returns exactly code, message, field and hint."""
    # Arrange
    err = NotFound("no run 'x'.", field="run_id", value="x", hint="List runs.")

    # Act
    body = err.to_dict()

    # Assert
    assert body == {
        "code": "not_found",
        "message": "no run 'x'.",
        "field": "run_id",
        "hint": "List runs.",
    }


def test_str_includes_hint() -> None:
    """str() appends the hint to the message."""
    # Act
    text = str(ConfigError("bad value.", field="store.url", hint="Fix fedloop.toml."))

    # Assert
    assert text == "bad value. Fix fedloop.toml."


def test_str_does_not_repeat_hint_already_in_message() -> None:
    """str() does not repeat a hint the message already contains."""
    # Act
    text = str(ConfigError("bad value. Fix fedloop.toml.", hint="Fix fedloop.toml."))

    # Assert
    assert text == "bad value. Fix fedloop.toml."


def test_str_without_hint_is_message() -> None:
    """str() of an error without a hint is its message."""
    # Act / Assert
    assert str(Conflict("exists.")) == "exists."
