"""The pack's errors (what was wrong and what is accepted) and the limits every input is checked against."""
