from smsgate.cli import app

app(prog_name="smsgate")
