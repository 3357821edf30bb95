#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Installs the LLM tunnel connector as a Windows service (WinSW), on Windows 10/11.

.DESCRIPTION
    1. makes a venv in C:\Program Files\llm-connector\venv and pip-installs the project into it;
    2. puts WinSW (renamed llm-connector.exe) and llm-connector.xml next to it;
    3. prepares C:\ProgramData\llm-connector (config, certificates, logs) readable only by
       SYSTEM, Administrators and the service account (LocalService);
    4. runs `connector doctor`, registers the service and starts it.
    Run it again to upgrade: the service is stopped, the venv refreshed, the service started.

.EXAMPLE
    # From an elevated PowerShell, in a checkout of the project (or pass -Source):
    .\deploy\windows\install.ps1 -WinSW C:\Users\me\Downloads\WinSW-x64.exe
#>
[CmdletBinding()]
param(
    # What pip installs: the project folder (default: this checkout) or a built wheel.
    [string]$Source = (Resolve-Path (Join-Path $PSScriptRoot "..\..")).Path,
    # WinSW-x64.exe, downloaded from https://github.com/winsw/winsw/releases (v2.12.0).
    # When omitted, it is downloaded from there.
    [string]$WinSW = "",
    [string]$WinSWUrl = "https://github.com/winsw/winsw/releases/download/v2.12.0/WinSW-x64.exe",
    # A Python >= 3.11 installed for all users (the service account cannot read a per-user
    # install under C:\Users). Default: the py launcher's newest Python 3.
    [string]$Python = "",
    # Name of an environment variable holding the upstream's API key (the connector.toml
    # [upstreams.*] api_key_env); its value is taken from this session and given to the service.
    [string]$UpstreamKeyEnv = "",
    # Do not start the service when `connector doctor` fails.
    [switch]$RequireDoctor
)
$ErrorActionPreference = "Stop"
Set-StrictMode -Version Latest

$ServiceId = "llm-connector"
$InstallDir = Join-Path $env:ProgramFiles "llm-connector"
$DataDir = Join-Path $env:ProgramData "llm-connector"
$Venv = Join-Path $InstallDir "venv"
$Connector = Join-Path $Venv "Scripts\connector.exe"
$Wrapper = Join-Path $InstallDir "$ServiceId.exe"
$ServiceXml = Join-Path $InstallDir "$ServiceId.xml"
$Config = Join-Path $DataDir "connector.toml"
# Well-known SIDs, so that this works on any Windows language.
$System = "*S-1-5-18"; $Admins = "*S-1-5-32-544"; $LocalService = "*S-1-5-19"

function Step([string]$Message) { Write-Host "==> $Message" -ForegroundColor Cyan }

function Invoke-Checked([string]$Exe, [string[]]$Arguments) {
    & $Exe @Arguments
    if ($LASTEXITCODE -ne 0) { throw "$Exe $($Arguments -join ' ') failed with exit code $LASTEXITCODE" }
}

# --- 0. an upgrade stops the running service first
if (Get-Service -Name $ServiceId -ErrorAction SilentlyContinue) {
    Step "Stopping the running $ServiceId service (upgrade)"
    Stop-Service -Name $ServiceId -ErrorAction SilentlyContinue
}

# --- 1. the venv and the project
Step "Creating the venv in $Venv"
New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
if ($Python) { $PyExe = $Python; $PyArgs = @() } else { $PyExe = "py"; $PyArgs = @("-3") }
Invoke-Checked $PyExe ($PyArgs + @("-c", "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)"))
Invoke-Checked $PyExe ($PyArgs + @("-m", "venv", $Venv))
$VenvPython = Join-Path $Venv "Scripts\python.exe"
Step "Installing the project from $Source"
Invoke-Checked $VenvPython @("-m", "pip", "install", "--quiet", "--upgrade", "pip")
Invoke-Checked $VenvPython @("-m", "pip", "install", "--quiet", "--upgrade", $Source)
if (-not (Test-Path $Connector)) { throw "pip did not install $Connector" }

# --- 2. WinSW and its XML
Step "Installing WinSW as $Wrapper"
if ($WinSW) {
    Copy-Item -Force $WinSW $Wrapper
} else {
    Invoke-WebRequest -UseBasicParsing -Uri $WinSWUrl -OutFile $Wrapper
}
Write-Host "    WinSW SHA256: $((Get-FileHash -Algorithm SHA256 $Wrapper).Hash) (compare with the release page)"
Copy-Item -Force (Join-Path $PSScriptRoot "$ServiceId.xml") $ServiceXml
if ($UpstreamKeyEnv) {
    $value = [Environment]::GetEnvironmentVariable($UpstreamKeyEnv)
    if (-not $value) { throw "-UpstreamKeyEnv ${UpstreamKeyEnv}: that variable is not set in this session" }
    [xml]$doc = Get-Content -Raw $ServiceXml
    $env_node = $doc.CreateElement("env")
    $env_node.SetAttribute("name", $UpstreamKeyEnv)
    $env_node.SetAttribute("value", $value)
    $doc.service.AppendChild($env_node) | Out-Null
    $doc.Save($ServiceXml)
    # The XML now holds a secret: only SYSTEM, Administrators and the service may read it.
    Invoke-Checked "icacls.exe" @($ServiceXml, "/inheritance:r", "/grant:r", "${System}:F", "${Admins}:F", "${LocalService}:R")
}

# --- 3. the data folder: config, certificates, logs
Step "Preparing $DataDir"
New-Item -ItemType Directory -Force -Path (Join-Path $DataDir "logs") | Out-Null
if (-not (Test-Path $Config)) {
    # The example, with plain file names: they resolve next to connector.toml. (Backslashes
    # inside TOML "..." strings are escapes: write C:/ProgramData/... or 'C:\...' if you must.)
    $example = Get-Content -Raw (Join-Path $PSScriptRoot "..\connector.toml")
    # UTF-8 without a byte-order mark: TOML readers reject a BOM (PowerShell 5.1's
    # "Set-Content -Encoding UTF8" would write one).
    [System.IO.File]::WriteAllText($Config, $example.Replace("/etc/llm-connector/", ""), (New-Object System.Text.UTF8Encoding $false))
    Write-Warning "Wrote an example ${Config}: edit address, server_name, proxy and [upstreams] now."
}
Invoke-Checked "icacls.exe" @($DataDir, "/inheritance:r", "/grant:r", "${System}:(OI)(CI)F", "${Admins}:(OI)(CI)F", "${LocalService}:(OI)(CI)RX")
Invoke-Checked "icacls.exe" @((Join-Path $DataDir "logs"), "/grant", "${LocalService}:(OI)(CI)M")
foreach ($name in @("ca.crt", "office-1.crt", "office-1.key")) {
    if (-not (Test-Path (Join-Path $DataDir $name))) {
        Write-Warning "$name is not in $DataDir yet: copy it from the home box (pki/$name)."
    }
}

# --- 4. check, register, start
Step "connector doctor"
& $Connector doctor -c $Config
$doctorOk = ($LASTEXITCODE -eq 0)
if (-not $doctorOk) {
    Write-Warning "connector doctor found a problem (see above and docs/troubleshooting.md)."
    if ($RequireDoctor) { throw "not starting the service: -RequireDoctor was given" }
}
Step "Registering and starting the $ServiceId service"
if (-not (Get-Service -Name $ServiceId -ErrorAction SilentlyContinue)) {
    Invoke-Checked $Wrapper @("install")
} else {
    Invoke-Checked $Wrapper @("refresh")
}
Invoke-Checked $Wrapper @("start")
Get-Service -Name $ServiceId | Format-Table -AutoSize Name, Status, StartType
Write-Host "Logs: $(Join-Path $DataDir 'logs')\$ServiceId.out.log / .err.log"
