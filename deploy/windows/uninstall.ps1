#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Stops and removes the llm-connector Windows service and its program files.

.DESCRIPTION
    Keeps C:\ProgramData\llm-connector (config, certificates, logs) unless -RemoveData is given:
    the office-1 key in there is a credential; remove it from the home box's allowed list or
    revoke it (`pki revoke office-1`) when this PC leaves service for good.
#>
[CmdletBinding()]
param([switch]$RemoveData)
$ErrorActionPreference = "Stop"
Set-StrictMode -Version Latest

$ServiceId = "llm-connector"
$InstallDir = Join-Path $env:ProgramFiles "llm-connector"
$DataDir = Join-Path $env:ProgramData "llm-connector"
$Wrapper = Join-Path $InstallDir "$ServiceId.exe"

if (Get-Service -Name $ServiceId -ErrorAction SilentlyContinue) {
    Write-Host "==> Stopping and unregistering $ServiceId"
    if (Test-Path $Wrapper) {
        & $Wrapper stop
        & $Wrapper uninstall
    } else {
        Stop-Service -Name $ServiceId -ErrorAction SilentlyContinue
        & sc.exe delete $ServiceId | Out-Null
    }
}
if (Test-Path $InstallDir) {
    Write-Host "==> Removing $InstallDir"
    Remove-Item -Recurse -Force $InstallDir
}
if ($RemoveData -and (Test-Path $DataDir)) {
    Write-Host "==> Removing $DataDir (config, certificates, logs)"
    Remove-Item -Recurse -Force $DataDir
} elseif (Test-Path $DataDir) {
    Write-Host "Kept $DataDir (config, certificates, logs); -RemoveData deletes it."
}
