import click

@click.group()
def cli():
    """tffexec."""

def main():
    cli(prog_name="tffexec")
